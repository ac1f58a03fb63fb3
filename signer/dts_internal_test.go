package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// clock is a settable time source for the engine.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newDTSEngine(t *testing.T) (*Engine, *hsm.HSM, *clock, context.Context) {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	e := New(Options{Store: st, HSM: h, IssuerAltName: "https://dts.example.com"})
	c := &clock{t: time.Now()}
	e.now = c.now
	t.Cleanup(func() { e.Close(); st.Close() })
	ctx := WithCaller(context.Background(), Caller{Tenant: "t1", Principal: "token:test", Roles: []string{RoleAdmin}})
	return e, h, c, ctx
}

func str(s string) *string { return &s }

func TestDTSSerialsArePositiveAndShort(t *testing.T) {
	for i := 0; i < 2000; i++ {
		n, err := dtsSerial()
		require.NoError(t, err)
		require.Equal(t, 1, n.Sign())
		der, err := asn1.Marshal(n)
		require.NoError(t, err)
		require.LessOrEqual(t, len(der)-2, 20)
	}
}

func TestIssuerAltNameEncoding(t *testing.T) {
	for _, tc := range []struct {
		in  string
		tag int
	}{{"https://dts.example.com/iaca", 6}, {"urn:example:dts", 6}, {"pki@example.com", 1}} {
		ext, err := issuerAltNameExtension(tc.in)
		require.NoError(t, err, tc.in)
		assert.True(t, ext.Id.Equal(oidIssuerAltName))
		assert.False(t, ext.Critical)
		var names []asn1.RawValue
		rest, err := asn1.Unmarshal(ext.Value, &names)
		require.NoError(t, err)
		assert.Empty(t, rest)
		require.Len(t, names, 1)
		assert.Equal(t, asn1.ClassContextSpecific, names[0].Class)
		assert.Equal(t, tc.tag, names[0].Tag)
		assert.Equal(t, tc.in, string(names[0].Bytes))
		assert.NoError(t, ValidIssuerAltName(tc.in))
	}
	ext, err := issuerAltNameExtension("")
	assert.NoError(t, err)
	assert.Nil(t, ext)
	for _, bad := range []string{"not a name", "example.com", "mailto", "Ada <a@example.com>", "https://", "ü@example.com"} {
		assert.Error(t, ValidIssuerAltName(bad), bad)
	}
}

func TestDTSCountryAndNameRules(t *testing.T) {
	assert.Len(t, iso3166Alpha2, 249)
	for _, c := range []string{"NZ", "US", "AU", "DE", "GB"} {
		assert.True(t, iso3166Alpha2[c], c)
	}
	for _, c := range []string{"UK", "EU", "XX", "nz", "USA", ""} {
		assert.False(t, iso3166Alpha2[c], c)
	}
	assert.True(t, printableString("Example DTS CA (test) 1-2/3:4=5?"))
	assert.False(t, printableString("a_b"))
	assert.False(t, printableString("Zürich"))
	assert.False(t, printableString("a@b"))
}

func TestDTSRootDefaultsFollowTheClock(t *testing.T) {
	e, _, c, ctx := newDTSEngine(t)
	c.t = time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	r, err := e.CreateDTSRootCA(ctx, DTSRootCAInput{OrganisationName: str("Example Inc.")})
	require.NoError(t, err)
	assert.Equal(t, time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), r.NotBefore)
	assert.Equal(t, time.Date(2050, 1, 2, 3, 4, 5, 0, time.UTC), r.NotAfter)
	assert.Equal(t, "t1 DTS CA", r.CommonName)

	// notBefore within the tolerated skew is accepted as given.
	_, err = e.CreateDTSRootCA(ctx, DTSRootCAInput{OrganisationName: str("X"),
		NotBefore: str(c.t.Add(-30 * time.Second).Format(time.RFC3339))})
	require.NoError(t, err)
	_, err = e.CreateDTSRootCA(ctx, DTSRootCAInput{OrganisationName: str("X"),
		NotBefore: str(c.t.Add(-2 * time.Minute).Format(time.RFC3339))})
	require.Error(t, err)
	assert.Equal(t, "notBefore", AsError(err).Fields[0].Field)
}

func TestDTSSignerValidityAndExpiry(t *testing.T) {
	e, _, c, ctx := newDTSEngine(t)
	start := time.Now().UTC().Truncate(time.Second)
	c.t = start
	root, err := e.CreateDTSRootCA(ctx, DTSRootCAInput{OrganisationName: str("Example Inc."),
		NotAfter: str(start.Add(100 * 24 * time.Hour).Format(time.RFC3339))})
	require.NoError(t, err)
	s, err := e.CreateVICALSigner(ctx, &root.ID, nil)
	require.NoError(t, err)
	// The signer's certificate is cut to the root's notAfter.
	require.NotNil(t, s.NotAfter)
	assert.Equal(t, root.NotAfter, *s.NotAfter)
	active := true
	_, err = e.UpdateVICALSigner(ctx, s.ID, VICALSignerUpdate{Active: &active})
	require.NoError(t, err)
	_, err = e.SignWithVICALSigner(ctx, s.ID, []byte("x"), nil)
	require.NoError(t, err)

	// After expiry nothing signs and nothing is issued.
	c.t = root.NotAfter.Add(time.Second)
	_, err = e.SignWithVICALSigner(ctx, s.ID, []byte("x"), nil)
	assert.Equal(t, KindWrongState, KindOf(err))
	_, err = e.CreateVICALSigner(ctx, &root.ID, nil)
	assert.Equal(t, KindWrongState, KindOf(err))
}

func TestDTSRootWithFutureNotBeforeIssuesFromThen(t *testing.T) {
	e, _, c, ctx := newDTSEngine(t)
	c.t = time.Now().UTC().Truncate(time.Second)
	nb := c.t.Add(48 * time.Hour)
	root, err := e.CreateDTSRootCA(ctx, DTSRootCAInput{OrganisationName: str("X"), NotBefore: str(nb.Format(time.RFC3339))})
	require.NoError(t, err)
	s, err := e.CreateVICALSigner(ctx, &root.ID, nil)
	require.NoError(t, err)
	assert.Equal(t, nb, *s.NotBefore)
	assert.Equal(t, nb.Add(dtsSignerValidity), *s.NotAfter)
}

// A managed root's CRL is signed at the root's creation and re-signed by
// the background refresh once dtsCRLRefresh has passed, with increasing
// numbers; the public read only serves what is stored, even past its
// nextUpdate (reported once).
func TestDTSCRLRefreshesWithIncreasingNumbers(t *testing.T) {
	e, _, c, ctx := newDTSEngine(t)
	c.t = time.Now().UTC().Truncate(time.Second)
	root, err := e.CreateDTSRootCA(ctx, DTSRootCAInput{OrganisationName: str("X")})
	require.NoError(t, err)
	b, _ := pem.Decode([]byte(root.CertificatePEM))
	rc, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)

	get := func() *x509.RevocationList {
		der, err := e.DTSRootCRL(context.Background(), root.ID)
		require.NoError(t, err)
		crl, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		require.NoError(t, crl.CheckSignatureFrom(rc))
		return crl
	}
	version := func() uint64 {
		rec, err := e.store.Get(ctx, kindDTSCRL, "t1", root.ID)
		require.NoError(t, err)
		return rec.Version
	}
	refresh := func() int {
		n, err := e.RefreshDueCRLs(ctx)
		require.NoError(t, err)
		return n
	}
	first := get()
	assert.Equal(t, int64(1), first.Number.Int64())
	assert.Equal(t, c.t, first.ThisUpdate)
	assert.Equal(t, c.t.Add(dtsCRLValidity), first.NextUpdate)
	assert.Equal(t, first.Raw, get().Raw, "a fresh CRL is served as is")
	assert.Zero(t, refresh())

	c.t = c.t.Add(dtsCRLRefresh + time.Second)
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
	_, err = e.UpdateDTSRootCA(ctx, root.ID, &off, nil)
	require.NoError(t, err)
	c.t = c.t.Add(dtsCRLRefresh + time.Second)
	assert.Equal(t, 1, refresh())
	third := get()
	assert.Equal(t, int64(3), third.Number.Int64())

	// Past its nextUpdate with no refresh (the HSM away, say), the CRL is
	// still served as it is, and the operator hears of it once.
	c.t = c.t.Add(dtsCRLValidity + time.Second)
	v = version()
	for i := 0; i < 10; i++ {
		assert.Equal(t, third.Raw, get().Raw)
	}
	assert.Equal(t, v, version())
	var m dto.Metric
	require.NoError(t, e.metrics.CRLOverdue.WithLabelValues("dts").Write(&m))
	assert.Equal(t, 1.0, m.GetCounter().GetValue())
}

// Deleting a signer the root issued re-signs the root's CRL at once with
// the signer's certificate on it; when that signature fails, the CRL is
// left marked and the next refresh round signs it.
func TestDTSSignerDeletionSignsTheRootCRL(t *testing.T) {
	e, h, _, ctx := newDTSEngine(t)
	fh := &failingSignHSM{HSM: h}
	e.SetHSM(fh)
	root, err := e.CreateDTSRootCA(ctx, DTSRootCAInput{OrganisationName: str("X")})
	require.NoError(t, err)
	crlOf := func() *x509.RevocationList {
		der, err := e.DTSRootCRL(context.Background(), root.ID)
		require.NoError(t, err)
		crl, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		return crl
	}
	var serials []string
	for i := 0; i < 2; i++ {
		s, err := e.CreateVICALSigner(ctx, &root.ID, nil)
		require.NoError(t, err)
		b, _ := pem.Decode([]byte(s.CertificatePEM))
		cert, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		serials = append(serials, cert.SerialNumber.Text(16))
		if i == 1 {
			fh.fail.Store(true)
		}
		require.NoError(t, e.DeleteVICALSigner(ctx, s.ID))
		fh.fail.Store(false)
		crl := crlOf()
		if i == 0 {
			assert.Equal(t, int64(2), crl.Number.Int64())
			require.Len(t, crl.RevokedCertificateEntries, 1)
			continue
		}
		assert.Equal(t, int64(2), crl.Number.Int64(), "the failed signature stored nothing")
	}
	n, err := e.RefreshDueCRLs(ctx)
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
		_, err := e.CreateDTSRootCA(ctx, DTSRootCAInput{OrganisationName: str("X")})
		require.NoError(t, err)
	}
	keys, err := h.List(context.Background())
	require.NoError(t, err)
	require.Len(t, keys, 3)

	// Quota full: fail fast, no key made.
	_, err = e.CreateDTSRootCA(ctx, DTSRootCAInput{OrganisationName: str("X")})
	assert.Equal(t, KindQuotaExceeded, KindOf(err))

	// Fast check fooled (usage reads 2), commit refuses: the key made for
	// the attempt is destroyed and its intent settled.
	slow := &racyQuota{Store: e.store}
	e.store = slow
	_, err = e.CreateDTSRootCA(ctx, DTSRootCAInput{OrganisationName: str("X")})
	assert.Equal(t, KindQuotaExceeded, KindOf(err))
	assert.True(t, slow.fooled)
	keys, err = h.List(context.Background())
	require.NoError(t, err)
	assert.Len(t, keys, 3)
	intents, err := e.store.ListIntents(context.Background())
	require.NoError(t, err)
	assert.Empty(t, intents)
	idx, err := e.store.List(context.Background(), store.Query{Kind: kindDTSRootIndex, Tenant: store.PlatformTenant})
	require.NoError(t, err)
	assert.Len(t, idx.Records, 3, "no index entry outlives a refused create")
}

// racyQuota answers the fast quota check as if another replica had not yet
// committed, the situation of two racing creates.
type racyQuota struct {
	store.Store
	fooled bool
}

func (r *racyQuota) QuotaUsage(ctx context.Context, tenant, resource string) (int64, error) {
	r.fooled = true
	return 0, nil
}

func FuzzParseOneCertificatePEM(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(f, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "seed"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<31, 0), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(f, err)
	good := pemEncode("CERTIFICATE", der)
	f.Add(good)
	f.Add(good + good)
	f.Add(strings.Replace(good, "CERTIFICATE", "CERTIFICATE REQUEST", 2))
	f.Add("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseOneCertificatePEM(s)
		if err != nil {
			assert.Nil(t, c)
			assert.NotContains(t, err.Error(), "\n")
			return
		}
		_, err = x509.ParseCertificate(c.Raw)
		assert.NoError(t, err)
	})
}
