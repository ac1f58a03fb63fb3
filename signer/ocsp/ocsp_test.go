package ocsp_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/families"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/signer/ocsp"
	"github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

var backends = []string{"bolt", "redis"}

// countingHSM counts the signatures its keys make, and fails them on
// demand.
type countingHSM struct {
	signer.HSM
	signs atomic.Int64
	fail  atomic.Bool
}

func (h *countingHSM) Signer(ctx context.Context, id string) (crypto.Signer, error) {
	s, err := h.HSM.Signer(ctx, id)
	if err != nil {
		return nil, err
	}
	return countingSigner{Signer: s, h: h}, nil
}

type countingSigner struct {
	crypto.Signer
	h *countingHSM
}

func (s countingSigner) Sign(r io.Reader, digest []byte, o crypto.SignerOpts) ([]byte, error) {
	if s.h.fail.Load() {
		return nil, errors.New("signing fault")
	}
	s.h.signs.Add(1)
	return s.Signer.Sign(r, digest, o)
}

type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time      { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) set(d time.Duration) { c.off.Store(int64(d)) }
func ctxT1() context.Context {
	return signer.WithCaller(context.Background(), signer.Caller{Tenant: "t1", Principal: "token:test"})
}
func dn(cn string) *pca.DistinguishedName {
	return &pca.DistinguishedName{CommonName: cn, Country: "DE", State: "Berlin", Locality: "Berlin",
		Organization: "hsmca tests", OrganizationalUnit: "PKI"}
}

// env is the PCA family and the responder over one store and HSM; replica
// makes another daemon over the same.
type env struct {
	raw  store.Store
	h    *countingHSM
	hsm  *hsm.HSM
	clk  *clock
	m    *metrics.Metrics
	pca  *pca.Service
	core *signer.Core
	r    *ocsp.Responder
	mode ocsp.Mode
	rcfg ocsp.ResponderConfig
}

func newEnv(t *testing.T, backend string, mode ocsp.Mode, rcfg ocsp.ResponderConfig) *env {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	var raw store.Store
	switch backend {
	case "bolt":
		raw, err = boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{Indexes: families.Indexes()})
	case "redis":
		r := testenv.StartRedis(t)
		raw, err = redisstore.Open(context.Background(), r.URL(), redisstore.Options{Indexes: families.Indexes()})
	}
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	e := &env{raw: raw, h: &countingHSM{HSM: h}, hsm: h, clk: &clock{}, m: metrics.New("test"), mode: mode, rcfg: rcfg}
	e.core, e.pca, e.r = e.replica(t)
	return e
}

func (e *env) replica(t *testing.T) (*signer.Core, *pca.Service, *ocsp.Responder) {
	core := signer.New(signer.Options{Families: families.All(), Store: e.raw, HSM: e.h, Metrics: e.m, Now: e.clk.now})
	t.Cleanup(func() { core.Close() })
	svc := pca.New(core, pca.OCSP(ocsp.Config{Mode: e.mode}))
	return core, svc, ocsp.NewResponder(core, e.rcfg, svc.OCSPPublisher())
}

// ca makes a root with OCSP on and a leaf it issued; it returns the CA
// id, its certificate and the leaf's id and serial.
func (e *env) ca(t *testing.T) (string, *x509.Certificate, string, *big.Int) {
	t.Helper()
	ctx := ctxT1()
	id, err := e.pca.CreateCA(ctx, "t1", pca.CACreate{Type: "ROOT", DN: dn("OCSP Root"), KeyAlgorithm: "EC256",
		SignatureAlgorithm: "SHA256", Validity: &pca.Validity{Type: "YEAR", Value: 10}})
	require.NoError(t, err)
	require.NoError(t, e.pca.SetOCSP(ctx, "t1", id, true))
	certPEM, _, err := e.pca.ExportCA(ctx, "t1", id)
	require.NoError(t, err)
	b, _ := pem.Decode([]byte(certPEM))
	cert, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	leaf, err := e.pca.IssueCertificate(ctx, "t1", pca.CertIssue{IssuerID: id, DN: &pca.DistinguishedName{CommonName: "leaf.test"},
		Validity: &pca.Validity{Type: "DAY", Value: 30}, SANs: []pca.SAN{{Type: "DNS", Value: "leaf.test"}}})
	require.NoError(t, err)
	c, err := e.pca.GetCertificate(ctx, "t1", leaf)
	require.NoError(t, err)
	serial, ok := new(big.Int).SetString(c.SerialNumber, 16)
	require.True(t, ok)
	return id, cert, leaf, serial
}

func request(t *testing.T, ca *x509.Certificate, serial *big.Int, h crypto.Hash) []byte {
	t.Helper()
	kh, err := issuance.OCSPKeyHash(ca, h)
	require.NoError(t, err)
	der, err := (&xocsp.Request{HashAlgorithm: h, IssuerNameHash: issuance.OCSPNameHash(ca, h), IssuerKeyHash: kh,
		SerialNumber: serial}).Marshal()
	require.NoError(t, err)
	return der
}

// nonceRequest is a SHA-1 request with a nonce, as openssl sends it.
func nonceRequest(t *testing.T, ca *x509.Certificate, serial *big.Int, nonce []byte) []byte {
	t.Helper()
	id, err := issuance.CertIDFor(issuance.OCSPHashes[0], ca, serial)
	require.NoError(t, err)
	inner, err := asn1.Marshal(nonce)
	require.NoError(t, err)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(id) })
			})
			b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2})
						b.AddASN1OctetString(inner)
					})
				})
			})
		})
	})
	der, err := b.Bytes()
	require.NoError(t, err)
	return der
}

func parse(t *testing.T, a *ocsp.Answer, ca *x509.Certificate) *xocsp.Response {
	t.Helper()
	r, err := xocsp.ParseResponse(a.DER, ca)
	require.NoError(t, err, "status %s", a.Status)
	return r
}

func answers(t *testing.T, m *metrics.Metrics, status, cache string) float64 {
	var v dto.Metric
	require.NoError(t, m.OCSPAnswers.WithLabelValues(status, cache).Write(&v))
	return v.GetCounter().GetValue()
}

func eventCount(t *testing.T, raw store.Store, tenant, name, outcome string) int {
	t.Helper()
	evs, err := raw.ListEvents(context.Background(), tenant, 0, 0)
	require.NoError(t, err)
	n := 0
	for _, ev := range evs {
		if bytes.Contains(ev.Data, []byte(`"`+name+`"`)) && bytes.Contains(ev.Data, []byte(`"`+outcome+`"`)) {
			n++
		}
	}
	return n
}

// Answers come from the store without a signature once made, on any
// replica; a revocation re-signs them at once (every CertID hash already
// asked about, and SHA-1 ahead of the first request); a nonce gets its
// own answer echoing it.
func TestStoredAnswers(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend, ocsp.ModeDelegated, ocsp.ResponderConfig{})
			ctx := ctxT1()
			_, ca, leaf, serial := e.ca(t)
			assert.Equal(t, 1, eventCount(t, e.raw, "t1", "PCA_CA_OCSP_ENABLE", "SUCCESS"))
			assert.Equal(t, 1, eventCount(t, e.raw, "t1", "OCSP_RESPONDER_CERTIFICATE_ISSUE", "SUCCESS"))

			req := request(t, ca, serial, crypto.SHA1)
			first := e.r.Answer(ctx, req, "c1")
			require.Equal(t, ocsp.AnswerGood, first.Status)
			assert.Equal(t, ocsp.CacheMiss, first.Cache)
			r := parse(t, first, ca)
			assert.Equal(t, xocsp.Good, r.Status)
			require.NotNil(t, r.Certificate, "the delegated responder signs")
			assert.Equal(t, r.ThisUpdate.Add(ocsp.Validity), r.NextUpdate)

			signs := e.h.signs.Load()
			again := e.r.Answer(ctx, req, "c1")
			assert.Equal(t, ocsp.CacheHit, again.Cache)
			assert.Equal(t, first.DER, again.DER)
			_, _, other := e.replica(t)
			fromReplica := other.Answer(ctx, req, "c2")
			assert.Equal(t, ocsp.CacheHit, fromReplica.Cache, "replicas share the stored answers")
			assert.Equal(t, first.DER, fromReplica.DER)
			assert.Equal(t, signs, e.h.signs.Load(), "stored answers cost no signature")

			req256 := request(t, ca, serial, crypto.SHA256)
			a256 := e.r.Answer(ctx, req256, "c1")
			assert.Equal(t, ocsp.CacheMiss, a256.Cache)
			assert.Equal(t, crypto.SHA256, parse(t, a256, ca).IssuerHash)

			nonce := []byte("a nonce of sixteen")
			fresh := e.r.Answer(ctx, nonceRequest(t, ca, serial, nonce), "c1")
			assert.Equal(t, ocsp.CacheFresh, fresh.Cache)
			assert.True(t, fresh.Nonce)
			assert.True(t, bytes.Contains(fresh.DER, nonce), "the nonce is echoed")
			assert.Equal(t, xocsp.Good, parse(t, fresh, ca).Status)

			before := time.Now().Add(-time.Second)
			require.NoError(t, e.pca.RevokeCertificate(ctx, "t1", leaf, "CERTIFICATE_AUTHORITY_COMPROMISE"))
			assert.GreaterOrEqual(t, eventCount(t, e.raw, "t1", "OCSP_RESPONSE_SIGN", "SUCCESS"), 1)
			signs = e.h.signs.Load()
			for _, q := range [][]byte{req, req256} {
				a := other.Answer(ctx, q, "c2")
				assert.Equal(t, ocsp.CacheHit, a.Cache, "re-signed by the revocation")
				assert.Equal(t, ocsp.AnswerRevoked, a.Status)
				r := parse(t, a, ca)
				assert.Equal(t, xocsp.Revoked, r.Status)
				assert.Equal(t, xocsp.CACompromise, r.RevocationReason)
				assert.True(t, r.RevokedAt.After(before.Truncate(time.Second)) || r.RevokedAt.Equal(before.Truncate(time.Second)))
			}
			assert.Equal(t, signs, e.h.signs.Load())

			unknown := e.r.Answer(ctx, request(t, ca, big.NewInt(42), crypto.SHA1), "c1")
			assert.Equal(t, ocsp.AnswerUnknown, unknown.Status)
			assert.Equal(t, ocsp.CacheFresh, unknown.Cache, "never stored")
			assert.Equal(t, xocsp.Unknown, parse(t, unknown, ca).Status)

			assert.Equal(t, 2.0, answers(t, e.m, ocsp.AnswerGood, ocsp.CacheHit))
			assert.Equal(t, 2.0, answers(t, e.m, ocsp.AnswerRevoked, ocsp.CacheHit))
		})
	}
}

// The answers signed for one request alone are counted per client: past
// the rate, a nonce gets the stored answer without it, and an unknown
// serial tryLater.
func TestFreshRate(t *testing.T) {
	e := newEnv(t, "bolt", ocsp.ModeDelegated, ocsp.ResponderConfig{FreshRate: 0.001, FreshBurst: 2})
	ctx := ctxT1()
	_, ca, _, serial := e.ca(t)
	stored := e.r.Answer(ctx, request(t, ca, serial, crypto.SHA1), "c1")
	require.Equal(t, ocsp.CacheMiss, stored.Cache)
	for i := 0; i < 2; i++ {
		a := e.r.Answer(ctx, nonceRequest(t, ca, serial, []byte{byte(i), 1, 2, 3}), "c1")
		assert.Equal(t, ocsp.CacheFresh, a.Cache)
	}
	a := e.r.Answer(ctx, nonceRequest(t, ca, serial, []byte{9, 1, 2, 3}), "c1")
	assert.Equal(t, ocsp.CacheHit, a.Cache, "past the rate: the stored answer")
	assert.False(t, a.Nonce)
	assert.Equal(t, stored.DER, a.DER)
	u := e.r.Answer(ctx, request(t, ca, big.NewInt(42), crypto.SHA1), "c1")
	assert.Equal(t, ocsp.AnswerTryLater, u.Status)
	assert.Equal(t, issuance.OCSPErrorResponse(issuance.OCSPTryLater), u.DER)
	assert.Positive(t, u.RetryAfter)
	assert.Equal(t, ocsp.CacheFresh, e.r.Answer(ctx, request(t, ca, big.NewInt(42), crypto.SHA1), "c2").Cache,
		"another client has its own count")
}

// The janitor re-signs stored answers half way through their validity,
// and rotates the delegated responder two thirds through its
// certificate's life, destroying the old key.
func TestRefreshAndRotation(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend, ocsp.ModeDelegated, ocsp.ResponderConfig{})
			ctx := ctxT1()
			_, ca, _, serial := e.ca(t)
			req := request(t, ca, serial, crypto.SHA1)
			first := parse(t, e.r.Answer(ctx, req, "c"), ca)
			oldResponder := first.Certificate
			require.NotNil(t, oldResponder)

			pubs := []*ocsp.Publisher{e.pca.OCSPPublisher()}
			n, err := ocsp.Refresh(ctx, e.core, pubs)
			require.NoError(t, err)
			assert.Zero(t, n, "nothing due yet")

			e.clk.set(ocsp.Validity/2 + time.Minute)
			n, err = ocsp.Refresh(ctx, e.core, pubs)
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			a := e.r.Answer(ctx, req, "c")
			assert.Equal(t, ocsp.CacheHit, a.Cache)
			second := parse(t, a, ca)
			assert.True(t, second.ThisUpdate.After(first.ThisUpdate))
			assert.Equal(t, oldResponder.Raw, second.Certificate.Raw)

			e.clk.set(ocsp.ResponderValidity*2/3 + time.Hour)
			_, err = ocsp.Refresh(ctx, e.core, pubs)
			require.NoError(t, err)
			assert.Equal(t, 2, eventCount(t, e.raw, "t1", "OCSP_RESPONDER_CERTIFICATE_ISSUE", "SUCCESS"))
			a = e.r.Answer(ctx, req, "c")
			third := parse(t, a, ca)
			require.NotNil(t, third.Certificate)
			assert.NotEqual(t, oldResponder.Raw, third.Certificate.Raw, "signed by the new responder")
			assert.NotEqual(t, oldResponder.PublicKey, third.Certificate.PublicKey)
			assert.True(t, third.Certificate.NotAfter.After(oldResponder.NotAfter))

			// The old key is gone from the HSM; the issuer record names the new.
			recs, err := e.raw.List(ctx, store.Query{Kind: ocsp.RecordIssuer, Tenant: store.PlatformTenant})
			require.NoError(t, err)
			require.Len(t, recs.Records, 1)
			keyID := recs.Records[0].Fields[signer.KeyField]
			ok, err := e.hsm.Exists(ctx, keyID)
			require.NoError(t, err)
			assert.True(t, ok)
			intents, err := e.raw.ListIntents(ctx)
			require.NoError(t, err)
			assert.Empty(t, intents, "the rotation's intent is retired")
		})
	}
}

// In ModeCA the CA's own key signs: no certificate travels with the answer.
func TestModeCA(t *testing.T) {
	e := newEnv(t, "bolt", ocsp.ModeCA, ocsp.ResponderConfig{})
	ctx := ctxT1()
	_, ca, _, serial := e.ca(t)
	assert.Zero(t, eventCount(t, e.raw, "t1", "OCSP_RESPONDER_CERTIFICATE_ISSUE", "SUCCESS"))
	r := parse(t, e.r.Answer(ctx, request(t, ca, serial, crypto.SHA1), "c"), ca)
	assert.Nil(t, r.Certificate)
	assert.NoError(t, r.CheckSignatureFrom(ca))
}

// A revocation whose re-signing fails withdraws the stored answer: it is
// never served again, and the next request (or the janitor) signs the
// revoked one.
func TestRevocationWithdrawsOnFailure(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend, ocsp.ModeDelegated, ocsp.ResponderConfig{})
			ctx := ctxT1()
			_, ca, leaf, serial := e.ca(t)
			req := request(t, ca, serial, crypto.SHA1)
			require.Equal(t, ocsp.AnswerGood, e.r.Answer(ctx, req, "c").Status)

			e.h.fail.Store(true)
			err := e.pca.RevokeCertificate(ctx, "t1", leaf, "KEY_COMPROMISE")
			assert.Error(t, err, "the CRL could not be signed either")
			a := e.r.Answer(ctx, req, "c")
			assert.NotEqual(t, ocsp.AnswerGood, a.Status, "the stale good is withdrawn")
			e.h.fail.Store(false)

			n, err := ocsp.Refresh(ctx, e.core, []*ocsp.Publisher{e.pca.OCSPPublisher()})
			require.NoError(t, err)
			assert.Equal(t, 1, n, "the withdrawn answer is due at once")
			a = e.r.Answer(ctx, req, "c")
			assert.Equal(t, ocsp.CacheHit, a.Cache)
			assert.Equal(t, xocsp.Revoked, parse(t, a, ca).Status)
		})
	}
}

// Switching off drops the stored answers and answers unauthorized;
// switching on again reuses the responder. A purged CA leaves nothing
// behind: no issuer record, no answers, no responder key.
func TestSwitchOffAndPurge(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend, ocsp.ModeDelegated, ocsp.ResponderConfig{})
			ctx := ctxT1()
			id, ca, _, serial := e.ca(t)
			req := request(t, ca, serial, crypto.SHA1)
			require.Equal(t, ocsp.AnswerGood, e.r.Answer(ctx, req, "c").Status)

			require.NoError(t, e.pca.SetOCSP(ctx, "t1", id, false))
			assert.Equal(t, 1, eventCount(t, e.raw, "t1", "PCA_CA_OCSP_DISABLE", "SUCCESS"))
			a := e.r.Answer(ctx, req, "c")
			assert.Equal(t, ocsp.AnswerUnauthorized, a.Status)
			assert.Equal(t, issuance.OCSPErrorResponse(issuance.OCSPUnauthorized), a.DER)
			n, err := e.raw.CountRecords(ctx, ocsp.RecordResponse, store.PlatformTenant)
			require.NoError(t, err)
			assert.Zero(t, n)

			require.NoError(t, e.pca.SetOCSP(ctx, "t1", id, true))
			assert.Equal(t, 1, eventCount(t, e.raw, "t1", "OCSP_RESPONDER_CERTIFICATE_ISSUE", "SUCCESS"), "the responder is kept")
			assert.Equal(t, ocsp.AnswerGood, e.r.Answer(ctx, req, "c").Status)

			recs, err := e.raw.List(ctx, store.Query{Kind: ocsp.RecordIssuer, Tenant: store.PlatformTenant})
			require.NoError(t, err)
			require.Len(t, recs.Records, 1)
			keyID := recs.Records[0].Fields[signer.KeyField]

			require.NoError(t, e.pca.DisableCA(ctx, "t1", id))
			require.NoError(t, e.pca.DeleteCA(ctx, "t1", id, 7))
			assert.Equal(t, ocsp.AnswerUnauthorized, e.r.Answer(ctx, req, "c").Status, "a CA scheduled for deletion answers nothing")
			e.clk.set(8 * 24 * time.Hour)
			_, err = e.pca.SweepDeletedCAs(ctx)
			require.NoError(t, err)
			for _, kind := range []string{ocsp.RecordIssuer, ocsp.RecordResponse} {
				n, err := e.raw.CountRecords(ctx, kind, store.PlatformTenant)
				require.NoError(t, err)
				assert.Zero(t, n, kind)
			}
			ok, err := e.hsm.Exists(ctx, keyID)
			require.NoError(t, err)
			assert.False(t, ok, "the responder key is destroyed with the CA")
			assert.Equal(t, ocsp.AnswerUnauthorized, e.r.Answer(ctx, req, "c").Status)
		})
	}
}

// A revocation by a CA whose OCSP was never on costs the responder
// nothing: no record, no event, no signature.
func TestRevocationWithoutOCSP(t *testing.T) {
	e := newEnv(t, "bolt", ocsp.ModeDelegated, ocsp.ResponderConfig{})
	ctx := ctxT1()
	id, err := e.pca.CreateCA(ctx, "t1", pca.CACreate{Type: "ROOT", DN: dn("No OCSP"), KeyAlgorithm: "EC256",
		SignatureAlgorithm: "SHA256", Validity: &pca.Validity{Type: "YEAR", Value: 10}})
	require.NoError(t, err)
	leaf, err := e.pca.IssueCertificate(ctx, "t1", pca.CertIssue{IssuerID: id, DN: &pca.DistinguishedName{CommonName: "x.test"},
		Validity: &pca.Validity{Type: "DAY", Value: 1}, SANs: []pca.SAN{{Type: "DNS", Value: "x.test"}}})
	require.NoError(t, err)
	require.NoError(t, e.pca.RevokeCertificate(ctx, "t1", leaf, ""))
	for _, kind := range []string{ocsp.RecordIssuer, ocsp.RecordResponse} {
		n, err := e.raw.CountRecords(ctx, kind, store.PlatformTenant)
		require.NoError(t, err)
		assert.Zero(t, n, kind)
	}
	assert.Zero(t, eventCount(t, e.raw, "t1", "OCSP_RESPONSE_SIGN", "SUCCESS"))
}
