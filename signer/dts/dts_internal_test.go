package dts

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/storetest"
)

// clock is a settable time source for the core.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// fixture is the DTS service over a core of its own, whose store can be
// made to answer the fast quota check wrongly (racyQuota).
type fixture struct {
	*Service
	core *signer.Core
	racy *racyQuota
}

func newDTSEngine(t *testing.T) (*fixture, *hsm.HSM, *clock, context.Context) {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{Indexes: signer.StoreIndexes(Family())})
	require.NoError(t, err)
	c := &clock{t: time.Now()}
	racy := &racyQuota{Store: st}
	core := signer.New(signer.Options{Store: racy, HSM: h, Families: []signer.Family{Family()}, Now: c.now})
	e := &fixture{Service: New(core, IssuerAltName("https://dts.example.com")), core: core, racy: racy}
	t.Cleanup(func() { core.Close(); st.Close() })
	ctx := signer.WithCaller(context.Background(), signer.Caller{Tenant: "t1", Principal: "token:test", Roles: []string{signer.RoleAdmin}})
	return e, h, c, ctx
}

func str(s string) *string { return &s }

func TestDTSRootDefaultsFollowTheClock(t *testing.T) {
	e, _, c, ctx := newDTSEngine(t)
	c.t = time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	r, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("Example Inc.")})
	require.NoError(t, err)
	assert.Equal(t, time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), r.NotBefore)
	assert.Equal(t, time.Date(2050, 1, 2, 3, 4, 5, 0, time.UTC), r.NotAfter)
	assert.Equal(t, "t1 DTS CA", r.CommonName)

	// notBefore within the tolerated skew is accepted as given.
	_, err = e.CreateRoot(ctx, RootInput{OrganisationName: str("X"),
		NotBefore: str(c.t.Add(-30 * time.Second).Format(time.RFC3339))})
	require.NoError(t, err)
	_, err = e.CreateRoot(ctx, RootInput{OrganisationName: str("X"),
		NotBefore: str(c.t.Add(-2 * time.Minute).Format(time.RFC3339))})
	require.Error(t, err)
	assert.Equal(t, "notBefore", signer.AsError(err).Fields[0].Field)
}

func TestDTSSignerValidityAndExpiry(t *testing.T) {
	e, _, c, ctx := newDTSEngine(t)
	start := time.Now().UTC().Truncate(time.Second)
	c.t = start
	root, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("Example Inc."),
		NotAfter: str(start.Add(100 * 24 * time.Hour).Format(time.RFC3339))})
	require.NoError(t, err)
	s, err := e.CreateSigner(ctx, &root.ID, nil)
	require.NoError(t, err)
	// The signer's certificate is cut to the root's notAfter.
	require.NotNil(t, s.NotAfter)
	assert.Equal(t, root.NotAfter, *s.NotAfter)
	active := true
	_, err = e.UpdateSigner(ctx, s.ID, SignerUpdate{Active: &active})
	require.NoError(t, err)
	_, err = e.Sign(ctx, s.ID, []byte("x"), nil)
	require.NoError(t, err)

	// After expiry nothing signs and nothing is issued.
	c.t = root.NotAfter.Add(time.Second)
	_, err = e.Sign(ctx, s.ID, []byte("x"), nil)
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
	_, err = e.CreateSigner(ctx, &root.ID, nil)
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
}

func TestDTSRootWithFutureNotBeforeIssuesFromThen(t *testing.T) {
	e, _, c, ctx := newDTSEngine(t)
	c.t = time.Now().UTC().Truncate(time.Second)
	nb := c.t.Add(48 * time.Hour)
	root, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("X"), NotBefore: str(nb.Format(time.RFC3339))})
	require.NoError(t, err)
	s, err := e.CreateSigner(ctx, &root.ID, nil)
	require.NoError(t, err)
	assert.Equal(t, nb, *s.NotBefore)
	assert.Equal(t, nb.Add(signerValidity), *s.NotAfter)
}

// A managed root's CRL is signed at the root's creation and re-signed by
// the background refresh once crlRefresh has passed, with increasing
// numbers; the public read only serves what is stored, even past its
// nextUpdate (reported once).
func TestDTSCRLRefreshesWithIncreasingNumbers(t *testing.T) {
	e, _, c, ctx := newDTSEngine(t)
	c.t = time.Now().UTC().Truncate(time.Second)
	root, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("X")})
	require.NoError(t, err)
	b, _ := pem.Decode([]byte(root.CertificatePEM))
	rc, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)

	get := func() *x509.RevocationList {
		der, err := e.RootCRL(context.Background(), root.ID)
		require.NoError(t, err)
		crl, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		require.NoError(t, crl.CheckSignatureFrom(rc))
		return crl
	}
	version := func() uint64 {
		rec, err := e.core.Store().Get(ctx, kindCRL, "t1", root.ID)
		require.NoError(t, err)
		return rec.Version
	}
	refresh := func() int { // the family's janitor, as the daemon runs it
		n, err := Family().Janitors[0].Run(ctx, e.core)
		require.NoError(t, err)
		return n
	}
	first := get()
	assert.Equal(t, int64(1), first.Number.Int64())
	assert.Equal(t, c.t, first.ThisUpdate)
	assert.Equal(t, c.t.Add(crlValidity), first.NextUpdate)
	assert.Equal(t, first.Raw, get().Raw, "a fresh CRL is served as is")
	assert.Zero(t, refresh())

	c.t = c.t.Add(crlRefresh + time.Second)
	v := version()
	assert.Equal(t, first.Raw, get().Raw, "a read never signs")
	assert.Equal(t, v, version())
	assert.Equal(t, 1, refresh())
	second := get()
	assert.Equal(t, int64(2), second.Number.Int64())
	assert.Equal(t, c.t, second.ThisUpdate)
	assert.Zero(t, refresh())

	// A deactivated root still publishes its CRL.
	off := false
	_, err = e.UpdateRoot(ctx, root.ID, &off, nil, nil)
	require.NoError(t, err)
	c.t = c.t.Add(crlRefresh + time.Second)
	assert.Equal(t, 1, refresh())
	third := get()
	assert.Equal(t, int64(3), third.Number.Int64())

	// Past its nextUpdate with no refresh (the HSM away, say), the CRL is
	// still served as it is, and the operator hears of it once.
	c.t = c.t.Add(crlValidity + time.Second)
	v = version()
	for i := 0; i < 10; i++ {
		assert.Equal(t, third.Raw, get().Raw)
	}
	assert.Equal(t, v, version())
	var m dto.Metric
	require.NoError(t, e.core.Metrics().CRLOverdue.WithLabelValues("dts").Write(&m))
	assert.Equal(t, 1.0, m.GetCounter().GetValue())
}

// Deleting a signer the root issued re-signs the root's CRL at once with
// the signer's certificate on it; when that signature fails, the CRL is
// left marked and the next refresh round signs it.
func TestDTSSignerDeletionSignsTheRootCRL(t *testing.T) {
	e, h, _, ctx := newDTSEngine(t)
	fh := &failingSignHSM{HSM: h}
	e.core.SetHSM(fh)
	root, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("X")})
	require.NoError(t, err)
	crlOf := func() *x509.RevocationList {
		der, err := e.RootCRL(context.Background(), root.ID)
		require.NoError(t, err)
		crl, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		return crl
	}
	var serials []string
	for i := 0; i < 2; i++ {
		s, err := e.CreateSigner(ctx, &root.ID, nil)
		require.NoError(t, err)
		b, _ := pem.Decode([]byte(s.CertificatePEM))
		cert, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		serials = append(serials, cert.SerialNumber.Text(16))
		if i == 1 {
			fh.fail.Store(true)
		}
		require.NoError(t, e.DeleteSigner(ctx, s.ID))
		fh.fail.Store(false)
		crl := crlOf()
		if i == 0 {
			assert.Equal(t, int64(2), crl.Number.Int64())
			require.Len(t, crl.RevokedCertificateEntries, 1)
			continue
		}
		assert.Equal(t, int64(2), crl.Number.Int64(), "the failed signature stored nothing")
	}
	n, err := e.refreshDueCRLs(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	crl := crlOf()
	assert.Equal(t, int64(3), crl.Number.Int64())
	var listed []string
	for _, r := range crl.RevokedCertificateEntries {
		listed = append(listed, r.SerialNumber.Text(16))
	}
	assert.ElementsMatch(t, serials, listed)
}

// failingSignHSM fails the signatures of its signers while fail is set.
type failingSignHSM struct {
	*hsm.HSM
	fail atomic.Bool
}

func (f *failingSignHSM) Signer(ctx context.Context, id string) (crypto.Signer, error) {
	s, err := f.HSM.Signer(ctx, id)
	if err != nil {
		return nil, err
	}
	return failingSigner{Signer: s, fail: &f.fail}, nil
}

type failingSigner struct {
	crypto.Signer
	fail *atomic.Bool
}

func (s failingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if s.fail.Load() {
		return nil, errors.New("injected: the signature failed")
	}
	return s.Signer.Sign(r, d, o)
}

func TestDTSRootCreateFailureAbandonsKey(t *testing.T) {
	e, h, _, ctx := newDTSEngine(t)
	for i := 0; i < 3; i++ {
		_, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("X")})
		require.NoError(t, err)
	}
	keys, err := h.List(context.Background())
	require.NoError(t, err)
	require.Len(t, keys, 3)

	// Quota full: fail fast, no key made.
	_, err = e.CreateRoot(ctx, RootInput{OrganisationName: str("X")})
	assert.Equal(t, signer.KindQuotaExceeded, signer.KindOf(err))

	// Fast check fooled (usage reads 2), commit refuses: the key made for
	// the attempt is destroyed and its intent settled.
	slow := e.racy
	slow.on.Store(true)
	_, err = e.CreateRoot(ctx, RootInput{OrganisationName: str("X")})
	assert.Equal(t, signer.KindQuotaExceeded, signer.KindOf(err))
	assert.True(t, slow.fooled.Load())
	keys, err = h.List(context.Background())
	require.NoError(t, err)
	assert.Len(t, keys, 3)
	intents, err := e.core.Store().ListIntents(context.Background())
	require.NoError(t, err)
	assert.Empty(t, intents)
	idx, err := e.core.Store().List(context.Background(), store.Query{Kind: kindRootIndex, Tenant: store.PlatformTenant})
	require.NoError(t, err)
	assert.Len(t, idx.Records, 3, "no index entry outlives a refused create")
}

// racyQuota, once on, answers the fast quota check as if another replica
// had not yet committed, the situation of two racing creates.
type racyQuota struct {
	store.Store
	on, fooled atomic.Bool

	// fault makes the next create of a record of one kind fail (see
	// Create); faultKey and faultID name what that create was writing.
	mu                sync.Mutex
	fault             createFault
	faultKey, faultID string
}

// createFault is a failure of the next create of a record of kind (see
// storetest.FailWrite).
type createFault struct{ kind, mode string }

func (r *racyQuota) failNextCreate(kind, mode string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault = createFault{kind, mode}
}

func (r *racyQuota) Create(ctx context.Context, rec *store.Record, opts store.WriteOpts) error {
	r.mu.Lock()
	mode := ""
	if r.fault.kind == rec.Kind {
		mode = r.fault.mode
		r.fault = createFault{}
		r.faultKey, r.faultID = rec.Fields[signer.KeyField], rec.ID
	}
	r.mu.Unlock()
	return storetest.FailWrite(mode, store.ErrExists, func() error { return r.Store.Create(ctx, rec, opts) })
}

func (r *racyQuota) QuotaUsage(ctx context.Context, tenant, resource string) (int64, error) {
	if !r.on.Load() {
		return r.Store.QuotaUsage(ctx, tenant, resource)
	}
	r.fooled.Store(true)
	return 0, nil
}

// What the family declares to the core: fixed quotas (the public
// service's limits, which configuration cannot raise), the root index by
// crl_due, and the active roots for the CA gauges.
func TestDTSFamily(t *testing.T) {
	e, _, c, ctx := newDTSEngine(t)
	_, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("X")})
	require.NoError(t, err)
	off := false
	r, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("Y")})
	require.NoError(t, err)
	_, err = e.UpdateRoot(ctx, r.ID, &off, nil, nil)
	require.NoError(t, err)

	core := signer.New(signer.Options{Store: e.core.Store(), Families: []signer.Family{Family()}, Now: c.now,
		Quotas: map[string]int64{QuotaRoots: 50, QuotaSigners: 50, QuotaIntermediates: 50}})
	t.Cleanup(func() { core.Close() })
	assert.Equal(t, int64(3), core.QuotaLimit(QuotaRoots))
	assert.Equal(t, int64(5), core.QuotaLimit(QuotaSigners))
	assert.Equal(t, int64(50), core.QuotaLimit(QuotaIntermediates), "configurable")
	assert.Equal(t, []string{QuotaRoots, QuotaSigners, QuotaIntermediates}, core.QuotaResources())
	assert.Equal(t, []store.Index{{Kind: "dts_root_index", Field: "crl_due"}, {Kind: "dts_intermediate_index", Field: "crl_due"},
		{Kind: "dts_intermediate_ca", Field: "ca_id"}}, signer.StoreIndexes(Family())[len(signer.StoreIndexes()):], "after the core's own")

	require.NoError(t, core.RefreshInventory(ctx))
	gauge := func(name, label, value string) float64 {
		fams, err := core.Metrics().Registry.Gather()
		require.NoError(t, err)
		for _, f := range fams {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if f.GetName() == name && l.GetName() == label && l.GetValue() == value {
						return m.GetGauge().GetValue()
					}
				}
			}
		}
		t.Fatalf("no %s{%s=%q}", name, label, value)
		return 0
	}
	assert.Equal(t, 1.0, gauge("hsmca_ca_certificates", "kind", "dts_root"), "the inactive root is not counted")
	assert.InDelta(t, (20 * 365 * 24 * time.Hour).Seconds(), gauge("hsmca_ca_certificate_expiry_seconds", "kind", "dts_root"), 10*24*3600)
	assert.InDelta(t, 2.0/3, gauge("hsmca_quota_usage_ratio", "resource", QuotaRoots), 1e-9)
}

// MATTR's bounds, on a fixed clock: notAfter at most 20 years from
// creation whatever notBefore is (the default cut to it), notBefore
// before that bound.
func TestDTSRootValidityBoundIsTwentyYearsFromCreation(t *testing.T) {
	e, _, c, ctx := newDTSEngine(t)
	c.t = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	bound := time.Date(2050, 1, 2, 3, 4, 5, 0, time.UTC)
	nb := time.Date(2031, 7, 2, 3, 4, 5, 0, time.UTC) // 18 months on

	refused := func(in RootInput, field, msg string) {
		t.Helper()
		_, err := e.CreateRoot(ctx, in)
		require.Error(t, err)
		fe := signer.AsError(err).Fields
		require.Len(t, fe, 1, "%v", err)
		assert.Equal(t, field, fe[0].Field)
		assert.Contains(t, fe[0].Msg, msg)
	}
	refused(RootInput{OrganisationName: str("X"), NotBefore: str(nb.Format(time.RFC3339)),
		NotAfter: str(nb.AddDate(20, 0, 0).Format(time.RFC3339))}, "notAfter", "at most 20 years from creation (2050-01-02T03:04:05Z)")
	refused(RootInput{OrganisationName: str("X"), NotAfter: str(bound.Add(time.Second).Format(time.RFC3339))},
		"notAfter", "at most 20 years from creation")
	refused(RootInput{OrganisationName: str("X"), NotBefore: str(bound.Format(time.RFC3339))},
		"notBefore", "less than 20 years from now")

	r, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("X"), NotBefore: str(nb.Format(time.RFC3339))})
	require.NoError(t, err)
	assert.Equal(t, nb, r.NotBefore)
	assert.Equal(t, bound, r.NotAfter, "notBefore + 20 years is cut to 20 years from creation")

	r, err = e.CreateRoot(ctx, RootInput{OrganisationName: str("X"), NotBefore: str(nb.Format(time.RFC3339)),
		NotAfter: str(bound.Format(time.RFC3339))})
	require.NoError(t, err)
	assert.Equal(t, bound, r.NotAfter, "exactly 20 years from creation is allowed")
}

// An uploaded root must be valid now: one whose notBefore is still ahead
// is refused like an expired one, and accepted once the clock reaches it.
func TestDTSUnmanagedRootMustBeValidNow(t *testing.T) {
	e, _, c, ctx := newDTSEngine(t)
	ca := testpki.NewCA(t, "External IACA")
	c.t = ca.Cert.NotBefore.Add(-time.Hour)
	_, err := e.CreateRoot(ctx, RootInput{CertificatePEM: str(string(ca.PEM()))})
	require.Error(t, err)
	fe := signer.AsError(err).Fields
	require.Len(t, fe, 1)
	assert.Equal(t, "certificatePem", fe[0].Field)
	assert.Contains(t, fe[0].Msg, "not valid yet")

	c.t = ca.Cert.NotBefore.Add(time.Minute)
	r, err := e.CreateRoot(ctx, RootInput{CertificatePEM: str(string(ca.PEM()))})
	require.NoError(t, err)
	assert.True(t, r.Active)
}

// Without an IssuerAlternativeName a managed root is refused before any
// key is made.
func TestDTSManagedRootWithoutIssuerAltNameIsRefused(t *testing.T) {
	e, h, _, ctx := newDTSEngine(t)
	bare := New(e.core)
	_, err := bare.CreateRoot(ctx, RootInput{OrganisationName: str("X")})
	require.Error(t, err)
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(err))
	assert.Equal(t, ReasonNoIssuerAltName, signer.ReasonOf(err))
	keys, err := h.List(context.Background())
	require.NoError(t, err)
	assert.Empty(t, keys)
}

// A root or signer whose record write failed keeps its key unless the
// store surely refused the write: one with an unknown outcome may have
// committed, and its record would then name a destroyed key.
func TestDTSCommitKeepsTheKeyOfAWriteThatMayHaveCommitted(t *testing.T) {
	for _, kind := range []string{RecordRoot, RecordSigner} {
		for _, mode := range []string{storetest.Refuse, storetest.LoseBefore, storetest.LoseAfter} {
			t.Run(kind+"/"+mode, func(t *testing.T) {
				e, h, _, ctx := newDTSEngine(t)
				var err error
				if kind == RecordRoot {
					e.racy.failNextCreate(kind, mode)
					_, err = e.CreateRoot(ctx, RootInput{OrganisationName: str("Fault Inc.")})
				} else {
					root, rerr := e.CreateRoot(ctx, RootInput{OrganisationName: str("Fault Inc.")})
					require.NoError(t, rerr)
					e.racy.failNextCreate(kind, mode)
					_, err = e.CreateSigner(ctx, &root.ID, nil)
				}
				require.Error(t, err)
				e.racy.mu.Lock()
				keyID, id := e.racy.faultKey, e.racy.faultID
				e.racy.mu.Unlock()
				require.NotEmpty(t, keyID)
				bg := context.Background()
				exists, err := h.Exists(bg, keyID)
				require.NoError(t, err)
				intents, err := e.racy.ListIntents(bg)
				require.NoError(t, err)
				named := slices.ContainsFunc(intents, func(in store.Intent) bool { return slices.Contains(in.KeyIDs, keyID) })
				_, recErr := e.racy.Get(bg, kind, "t1", id)
				switch mode {
				case storetest.Refuse:
					assert.False(t, exists, "a refused write's key is destroyed")
					assert.False(t, named, "and its intent retired")
				case storetest.LoseBefore:
					assert.True(t, exists, "the key waits for the reconciler")
					assert.True(t, named, "with its intent")
					assert.ErrorIs(t, recErr, store.ErrNotFound)
				case storetest.LoseAfter:
					assert.True(t, exists, "the stored record's key is kept")
					assert.False(t, named, "the write retired the intent")
					assert.NoError(t, recErr)
				}
			})
		}
	}
}
