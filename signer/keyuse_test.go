package signer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// countingHSM counts the wrapping-key lookups.
type countingHSM struct {
	*hsm.HSM
	ensured atomic.Int32
}

func (c *countingHSM) EnsureWrappingKey(ctx context.Context, id, label string) error {
	c.ensured.Add(1)
	return c.HSM.EnsureWrappingKey(ctx, id, label)
}

func newHSMCore(t *testing.T) (*signer.Core, *countingHSM, *metrics.Metrics, store.Store) {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	m := metrics.New("test")
	ch := &countingHSM{HSM: h}
	c := signer.New(signer.Options{Store: st, HSM: ch, Metrics: m})
	t.Cleanup(func() { c.Close(); st.Close() })
	return c, ch, m, st
}

func TestSealUnseal(t *testing.T) {
	c, h, _, _ := newHSMCore(t)
	ctx := context.Background()
	const wrapID, label = "test-wrap", "hsmca/test/wrap"

	blob, err := c.Seal(ctx, wrapID, label, []byte("secret"), []byte("aad-1"))
	require.NoError(t, err)
	assert.NotContains(t, string(blob), "secret")
	_, err = c.Seal(ctx, wrapID, label, []byte("other"), []byte("aad-2"))
	require.NoError(t, err)
	assert.Equal(t, int32(1), h.ensured.Load(), "the wrapping key is looked up once per HSM")

	pt, err := c.Unseal(ctx, wrapID, blob, []byte("aad-1"))
	require.NoError(t, err)
	assert.Equal(t, "secret", string(pt))
	_, err = c.Unseal(ctx, wrapID, blob, []byte("aad-2"))
	assert.Error(t, err, "another aad does not open the blob")

	// A reopened token is another HSM: the key is looked up again there.
	c.SetHSM(&countingHSM{HSM: h.HSM})
	_, err = c.Seal(ctx, wrapID, label, []byte("x"), nil)
	require.NoError(t, err)
}

func TestTimedSignerObservesSignatures(t *testing.T) {
	c, _, m, _ := newHSMCore(t)
	ctx := context.Background()
	nk, err := c.GenerateKey(ctx, "t1", "thing", "r1", hsm.EC256)
	require.NoError(t, err)
	s, err := c.TimedSigner(ctx, nk.ID, "EC256", "test_sign")
	require.NoError(t, err)
	digest := sha256.Sum256([]byte("data"))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	require.NoError(t, err)
	assert.True(t, ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), digest[:], sig))
	assert.Equal(t, []string{"test_sign/EC256"}, histogramLabels(t, m))

	_, err = c.TimedSigner(ctx, "0123456789abcdef0123456789abcdef", "EC256", "test_sign")
	assert.Equal(t, signer.KindNotFound, signer.KindOf(err))
}

func histogramLabels(t *testing.T, m *metrics.Metrics) []string {
	t.Helper()
	fams, err := m.Registry.Gather()
	require.NoError(t, err)
	var out []string
	for _, f := range fams {
		if f.GetName() != "hsmca_signing_duration_seconds" {
			continue
		}
		for _, mt := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range mt.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if mt.GetHistogram().GetSampleCount() > 0 {
				out = append(out, l["operation"]+"/"+l["key_algorithm"])
			}
		}
	}
	return out
}

func TestCommitKey(t *testing.T) {
	c, h, _, st := newHSMCore(t)
	ctx := context.Background()
	rec := func(id string) *store.Record {
		return &store.Record{Kind: "thing", Tenant: "t1", ID: id, Data: json.RawMessage(`{}`)}
	}

	nk, err := c.GenerateKey(ctx, "t1", "thing", "r1", hsm.EC256)
	require.NoError(t, err)
	r := rec("r1")
	require.NoError(t, c.CommitKey(ctx, r, nk, store.WriteOpts{Quota: &store.Quota{Resource: "thing", Limit: 1}}))
	got, err := st.Get(ctx, "thing", "t1", "r1")
	require.NoError(t, err)
	assert.Equal(t, nk.ID, got.Fields[signer.KeyField])

	// Refused by the store (quota): the new key is destroyed at once.
	nk2, err := c.GenerateKey(ctx, "t1", "thing", "r2", hsm.EC256)
	require.NoError(t, err)
	err = c.CommitKey(ctx, rec("r2"), nk2, store.WriteOpts{Quota: &store.Quota{Resource: "thing", Limit: 1}})
	assert.ErrorIs(t, err, store.ErrQuotaExceeded, "the store's error, for the family to word")
	ok, err := h.Exists(ctx, nk2.ID)
	require.NoError(t, err)
	assert.False(t, ok)
	ok, err = h.Exists(ctx, nk.ID)
	require.NoError(t, err)
	assert.True(t, ok)
	left, err := st.ListIntents(ctx)
	require.NoError(t, err)
	assert.Empty(t, left)
}

func TestReplaceKey(t *testing.T) {
	c, h, _, st := newHSMCore(t)
	ctx := context.Background()
	nk, err := c.GenerateKey(ctx, "t1", "thing", "r1", hsm.EC256)
	require.NoError(t, err)
	r := &store.Record{Kind: "thing", Tenant: "t1", ID: "r1", Data: json.RawMessage(`{}`)}
	require.NoError(t, c.CommitKey(ctx, r, nk, store.WriteOpts{}))
	stored, err := st.Get(ctx, "thing", "t1", "r1")
	require.NoError(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	require.NoError(t, c.ReplaceKey(ctx, stored, key, func(r *store.Record) { r.Data = json.RawMessage(`{"v":2}`) }))
	newID := stored.Fields[signer.KeyField]
	assert.NotEqual(t, nk.ID, newID)
	got, err := st.Get(ctx, "thing", "t1", "r1")
	require.NoError(t, err)
	assert.Equal(t, newID, got.Fields[signer.KeyField])
	assert.JSONEq(t, `{"v":2}`, string(got.Data))
	ok, err := h.Exists(ctx, nk.ID)
	require.NoError(t, err)
	assert.False(t, ok, "the old key is destroyed")
	s, err := c.Signer(ctx, newID)
	require.NoError(t, err)
	assert.True(t, key.PublicKey.Equal(s.Public()))
	left, err := st.ListIntents(ctx)
	require.NoError(t, err)
	assert.Empty(t, left)

	// A stale record (version conflict): the new key goes, the record and
	// its key stay.
	stale := *r
	stale.Fields = map[string]string{signer.KeyField: nk.ID}
	err = c.ReplaceKey(ctx, &stale, key, func(*store.Record) {})
	assert.ErrorIs(t, err, store.ErrVersionConflict)
	got, err = st.Get(ctx, "thing", "t1", "r1")
	require.NoError(t, err)
	assert.Equal(t, newID, got.Fields[signer.KeyField])
	left, err = st.ListIntents(ctx)
	require.NoError(t, err)
	assert.Empty(t, left)
}
