package keys_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/keys"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// ownerKind is the record kind of a test family whose records own keys
// that the keys API may use but not manage, as APIG certificates do.
const ownerKind = "test_owner"

var owners = signer.Family{Name: "owners", KeyOwners: []signer.KeyOwner{
	{RecordKind: ownerKind, Describe: "a test owner; manage it through /test"}}}

type env struct {
	core *signer.Core
	keys *keys.Service
	m    *metrics.Metrics
}

// newEnv is a core on SoftHSM and bolt with the keys family and the test
// owners registered in that order.
func newEnv(t *testing.T, o signer.Options) *env {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	o.Store, o.HSM, o.Metrics = st, h, metrics.New("test")
	o.Families = []signer.Family{keys.Family(), owners}
	c := signer.New(o)
	t.Cleanup(func() { c.Close(); st.Close() })
	return &env{core: c, keys: keys.New(c), m: o.Metrics}
}

func caller(tenant string) context.Context {
	return signer.WithCaller(context.Background(), signer.Caller{Tenant: tenant, Principal: "token:" + tenant})
}

// own writes a record of the test owner kind that owns an imported key.
func (e *env) own(t *testing.T, ctx context.Context, tenant, id string, key crypto.PrivateKey, fields map[string]string) {
	t.Helper()
	nk, err := e.core.ImportKey(ctx, tenant, ownerKind, id, key)
	require.NoError(t, err)
	rec := &store.Record{Kind: ownerKind, Tenant: tenant, ID: id, Data: json.RawMessage(`{}`), Fields: fields}
	require.NoError(t, e.core.CommitKey(ctx, rec, nk, store.WriteOpts{}))
}

func throwawayRSA4608(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	raw, err := os.ReadFile("testdata/rsa4608-throwaway.key")
	require.NoError(t, err)
	blk, _ := pem.Decode(raw)
	require.NotNil(t, blk)
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	require.NoError(t, err)
	return k
}

func digest() keys.SignInput {
	d := base64.StdEncoding.EncodeToString(make([]byte, 32))
	return keys.SignInput{Digest: &d}
}

// Ids resolve through the registered key owners in order: the keys API's
// own keys first. A key another family owns can be read and used, not
// managed, and the refusal names the owner as its family registered it.
func TestKeysOfOtherOwners(t *testing.T) {
	e := newEnv(t, signer.Options{Quotas: map[string]int64{keys.QuotaKeys: 1}})
	ctx := caller("acme")

	own, err := e.keys.Create(ctx, "acme", "EC256", "mine")
	require.NoError(t, err)
	assert.Equal(t, keys.RecordKey, own.Owner)
	_, err = e.keys.Create(ctx, "acme", "EC256", "")
	assert.Equal(t, signer.KindQuotaExceeded, signer.KindOf(err))
	assert.Equal(t, keys.ReasonQuota, signer.ReasonOf(err))
	assert.Equal(t, "the tenant's quota of 1 keys is used up; delete a key first", signer.AsError(err).Msg)

	id := uuid.NewString()
	e.own(t, ctx, "acme", id, throwawayRSA4608(t), nil)
	k, err := e.keys.Get(ctx, "acme", id)
	require.NoError(t, err)
	assert.Equal(t, ownerKind, k.Owner)
	assert.Equal(t, keys.StateEnabled, k.State)
	assert.Contains(t, k.PublicKeyPEM, "PUBLIC KEY")
	assert.Equal(t, "RSA", k.PublicKeyJWK["kty"])
	assert.Contains(t, k.SigningAlgorithms, "PS256")
	page, err := e.keys.List(ctx, "acme", 0, "")
	require.NoError(t, err)
	require.Len(t, page.Keys, 1, "each family lists what it created")
	assert.Equal(t, own.ID, page.Keys[0].ID)

	for _, err := range []error{
		func() error { _, err := e.keys.SetEnabled(ctx, "acme", id, false); return err }(),
		e.keys.Delete(ctx, "acme", id),
	} {
		assert.Equal(t, signer.KindConflict, signer.KindOf(err))
		assert.Equal(t, keys.ReasonOwned, signer.ReasonOf(err))
		assert.Equal(t, `key "`+id+`" belongs to a test owner; manage it through /test`, signer.AsError(err).Msg)
	}
	sig, err := e.keys.Sign(ctx, "acme", id, digest())
	require.NoError(t, err)
	assert.Equal(t, "RS256", sig.Algorithm)

	// A record of another owner under the id of one of the API's own keys
	// does not hide it.
	e.own(t, ctx, "acme", own.ID, throwawayRSA4608(t), nil)
	k, err = e.keys.Get(ctx, "acme", own.ID)
	require.NoError(t, err)
	assert.Equal(t, keys.RecordKey, k.Owner)

	// The owner's state field governs signing.
	off := uuid.NewString()
	e.own(t, ctx, "acme", off, throwawayRSA4608(t), map[string]string{signer.KeyStateField: signer.KeyStateDisabled})
	_, err = e.keys.Sign(ctx, "acme", off, digest())
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
	assert.Equal(t, keys.ReasonDisabled, signer.ReasonOf(err))

	_, err = e.keys.Get(caller("globex"), "globex", id)
	assert.Equal(t, signer.KindNotFound, signer.KindOf(err), "another tenant's key is not found")
}

// A signature with an RSA key over 4096 bits waits for its turn in the
// heavy-work pool; a light one of the same tenant does not. Each is timed
// under key_sign with its key's algorithm.
func TestLargeRSASignatureTakesItsTurn(t *testing.T) {
	e := newEnv(t, signer.Options{HeavyWork: signer.HeavyWork{Concurrency: 1, MaxWait: time.Minute}})
	ctx := caller("other")
	ec, err := e.keys.Create(ctx, "other", "EC256", "")
	require.NoError(t, err)
	large := uuid.NewString()
	e.own(t, ctx, "other", large, throwawayRSA4608(t), nil)

	// Another tenant holds the only slot.
	hold, err := e.core.SignTurn(caller("acme"), "acme", &throwawayRSA4608(t).PublicKey)
	require.NoError(t, err)
	_, err = e.keys.Sign(ctx, "other", ec.ID, digest())
	require.NoError(t, err, "a light signature runs while the pool is full")

	signed := make(chan error, 1)
	go func() {
		_, err := e.keys.Sign(ctx, "other", large, digest())
		signed <- err
	}()
	waiting := e.m.HeavyWaiting.WithLabelValues(string(signer.HeavyLargeRSASign))
	require.Eventually(t, func() bool { return gaugeValue(t, waiting) == 1 }, time.Minute, time.Millisecond)
	hold()
	require.NoError(t, <-signed)
	assert.Zero(t, gaugeValue(t, e.m.HeavyInFlight.WithLabelValues(string(signer.HeavyLargeRSASign))))
	assert.Zero(t, gaugeValue(t, waiting))

	assert.Equal(t, uint64(1), signings(t, e.m, "EC256"))
	// The owner record names no algorithm: the key's own (RSA4608) names it.
	assert.Equal(t, uint64(1), signings(t, e.m, "RSA_OTHER"))
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, g.Write(&m))
	return m.GetGauge().GetValue()
}

// signings counts the signatures timed under key_sign for an algorithm
// label.
func signings(t *testing.T, m *metrics.Metrics, alg string) uint64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != "hsmca_signing_duration_seconds" {
			continue
		}
		for _, mt := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range mt.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["operation"] == "key_sign" && l["key_algorithm"] == alg {
				return mt.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}
