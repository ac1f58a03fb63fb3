package dts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

// newIntermediateEngine is newDTSEngine on a chosen store backend, with
// quota configuration.
func newIntermediateEngine(t *testing.T, backend string, quotas map[string]int64) (*fixture, *hsm.HSM, *clock, context.Context) {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	var st store.Store
	switch backend {
	case "bolt":
		st, err = boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{Indexes: signer.StoreIndexes(Family())})
	case "redis":
		r := testenv.StartRedis(t)
		st, err = redisstore.Open(context.Background(), r.URL(), redisstore.Options{Indexes: signer.StoreIndexes(Family())})
	}
	require.NoError(t, err)
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	racy := &racyQuota{Store: st}
	core := signer.New(signer.Options{Store: racy, HSM: h, Families: []signer.Family{Family()}, Now: c.now, Quotas: quotas})
	e := &fixture{Service: New(core, IssuerAltName("https://dts.example.com")), core: core, racy: racy}
	t.Cleanup(func() { core.Close(); st.Close() })
	ctx := signer.WithCaller(context.Background(), signer.Caller{Tenant: "t1", Principal: "token:test", Roles: []string{signer.RoleAdmin}})
	return e, h, c, ctx
}

var backends = []string{"bolt", "redis"}

func yes() *bool { v := true; return &v }

func certOf(t *testing.T, pemText string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(pemText))
	require.NotNil(t, b, pemText)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

func hsmKeys(t *testing.T, h *hsm.HSM) int {
	t.Helper()
	keys, err := h.List(context.Background())
	require.NoError(t, err)
	return len(keys)
}

func ianOf(t *testing.T, c *x509.Certificate) string {
	t.Helper()
	for _, ext := range c.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 18}) {
			var gn []asn1.RawValue
			_, err := asn1.Unmarshal(ext.Value, &gn)
			require.NoError(t, err)
			require.Len(t, gn, 1)
			return string(gn[0].Bytes)
		}
	}
	return ""
}

// A managed root of the 3-tier model issues an intermediate whose key is
// in the HSM and whose certificate follows the profile; the intermediate
// issues VICAL signers whose certificates chain root -> intermediate ->
// signer, and which sign.
func TestIntermediateManagedChain(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e, h, c, ctx := newIntermediateEngine(t, backend, nil)
			root, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("Example Inc."), Country: str("NZ"), UseIntermediateCA: yes()})
			require.NoError(t, err)
			assert.True(t, root.UseIntermediateCA)
			rootCert := certOf(t, root.CertificatePEM)
			assert.Equal(t, 1, rootCert.MaxPathLen, "a root of the 3-tier model allows one intermediate level")

			m, err := e.CreateIntermediate(ctx, root.ID, IntermediateInput{})
			require.NoError(t, err)
			assert.Equal(t, root.ID, m.CAID)
			assert.True(t, m.Active)
			assert.True(t, m.Managed)
			assert.Equal(t, []string{UsageVICAL}, m.Usages)
			assert.Equal(t, 2, hsmKeys(t, h), "the intermediate's key is in the HSM")
			used, err := e.core.Store().QuotaUsage(ctx, "t1", QuotaIntermediates)
			require.NoError(t, err)
			assert.Equal(t, int64(1), used)

			ic := certOf(t, m.CertificatePEM)
			require.NoError(t, ic.CheckSignatureFrom(rootCert))
			assert.Equal(t, rootCert.RawSubject, ic.RawIssuer)
			assert.True(t, ic.IsCA)
			assert.True(t, ic.BasicConstraintsValid)
			assert.Equal(t, 0, ic.MaxPathLen)
			assert.True(t, ic.MaxPathLenZero)
			assert.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, ic.KeyUsage)
			assert.NotEmpty(t, ic.SubjectKeyId)
			assert.Equal(t, rootCert.SubjectKeyId, ic.AuthorityKeyId)
			assert.Equal(t, "https://dts.example.com", ianOf(t, ic), "the root's IssuerAlternativeName")
			assert.Equal(t, pkix.Name{Country: []string{"NZ"}, Organization: []string{"Example Inc."}, CommonName: "t1 DTS Intermediate CA"}.String(),
				ic.Subject.String())
			assert.Equal(t, c.t, ic.NotBefore)
			assert.Equal(t, c.t.AddDate(intermediateYears, 0, 0), ic.NotAfter)
			assert.Equal(t, 1, ic.SerialNumber.Sign())

			s, err := e.CreateSignerIn(ctx, SignerInput{IntermediateCAID: &m.ID})
			require.NoError(t, err)
			assert.Equal(t, root.ID, s.CAID)
			assert.Equal(t, m.ID, s.IntermediateID)
			sc := certOf(t, s.CertificatePEM)
			assert.Equal(t, ic.SubjectKeyId, sc.AuthorityKeyId)
			assert.Equal(t, "https://dts.example.com", ianOf(t, sc))
			assert.Equal(t, m.CertificatePEM+root.CertificatePEM, s.ChainPEM)

			roots, inters := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(rootCert)
			inters.AddCert(ic)
			chains, err := sc.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: c.t.Add(time.Minute),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			require.NoError(t, err)
			require.Len(t, chains, 1)
			assert.Len(t, chains[0], 3)

			_, err = e.UpdateSigner(ctx, s.ID, SignerUpdate{Active: yes()})
			require.NoError(t, err)
			_, err = e.Sign(ctx, s.ID, []byte("VICAL"), nil)
			require.NoError(t, err)

			// The same signer read back carries its chain.
			got, err := e.GetSigner(ctx, s.ID)
			require.NoError(t, err)
			assert.Equal(t, s.ChainPEM, got.ChainPEM)
			list, _, err := e.ListIntermediates(ctx, root.ID, ListParams{})
			require.NoError(t, err)
			require.Len(t, list, 1)
			assert.Equal(t, *m, list[0])
		})
	}
}

// A managed intermediate's validity lies within its root's: defaults are
// cut to it, and requests outside it are refused field by field.
func TestIntermediateValidityWithinRoot(t *testing.T) {
	e, _, c, ctx := newIntermediateEngine(t, "bolt", nil)
	nb := c.t.Add(48 * time.Hour)
	na := nb.AddDate(3, 0, 0)
	root, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("X"), UseIntermediateCA: yes(),
		NotBefore: str(nb.Format(time.RFC3339)), NotAfter: str(na.Format(time.RFC3339))})
	require.NoError(t, err)

	m, err := e.CreateIntermediate(ctx, root.ID, IntermediateInput{})
	require.NoError(t, err)
	assert.Equal(t, nb, m.NotBefore, "not before the root's notBefore")
	assert.Equal(t, na, m.NotAfter, "cut to the root's notAfter")

	m, err = e.CreateIntermediate(ctx, root.ID, IntermediateInput{CommonName: str("Second"), Country: str("AU"), OrganisationName: str("Other"),
		NotBefore: str(nb.Add(time.Hour).Format(time.RFC3339)), NotAfter: str(nb.Add(100 * 24 * time.Hour).Format(time.RFC3339))})
	require.NoError(t, err)
	assert.Equal(t, nb.Add(time.Hour), m.NotBefore)
	assert.Equal(t, nb.Add(100*24*time.Hour), m.NotAfter)
	assert.Equal(t, "Second", m.CommonName)
	assert.Equal(t, "AU", m.Country)
	assert.Equal(t, "Other", m.Organisation)

	// A signer under it is cut to the intermediate's validity.
	s, err := e.CreateSignerIn(ctx, SignerInput{IntermediateCAID: &m.ID})
	require.NoError(t, err)
	assert.Equal(t, m.NotBefore, *s.NotBefore)
	assert.Equal(t, m.NotAfter, *s.NotAfter)

	for _, tc := range []struct {
		name  string
		in    IntermediateInput
		field string
	}{
		{"notBefore before the root's", IntermediateInput{NotBefore: str(c.t.Add(time.Hour).Format(time.RFC3339))}, "notBefore"},
		{"notBefore in the past", IntermediateInput{NotBefore: str(c.t.Add(-time.Hour).Format(time.RFC3339))}, "notBefore"},
		{"notBefore after the root's notAfter", IntermediateInput{NotBefore: str(na.Format(time.RFC3339))}, "notBefore"},
		{"notAfter after the root's", IntermediateInput{NotAfter: str(na.Add(time.Second).Format(time.RFC3339))}, "notAfter"},
		{"notAfter before notBefore", IntermediateInput{NotAfter: str(nb.Add(-time.Hour).Format(time.RFC3339))}, "notAfter"},
		{"notAfter not a date", IntermediateInput{NotAfter: str("soon")}, "notAfter"},
		{"country", IntermediateInput{Country: str("nz")}, "country"},
		{"commonName", IntermediateInput{CommonName: str("é")}, "commonName"},
		{"organisationName", IntermediateInput{OrganisationName: str(" ")}, "organisationName"},
		{"certificatePem under a managed root", IntermediateInput{CertificatePEM: str(root.CertificatePEM)}, "certificatePem"},
		{"usages empty", IntermediateInput{Usages: &[]string{}}, "usages"},
		{"usages unknown", IntermediateInput{Usages: &[]string{"RICAL"}}, "usages"},
		{"usages repeated", IntermediateInput{Usages: &[]string{"VICAL", "VICAL"}}, "usages"},
	} {
		_, err := e.CreateIntermediate(ctx, root.ID, tc.in)
		require.Error(t, err, tc.name)
		assert.Equal(t, signer.KindInvalid, signer.KindOf(err), tc.name)
		require.NotEmpty(t, signer.AsError(err).Fields, tc.name)
		assert.Equal(t, tc.field, signer.AsError(err).Fields[0].Field, tc.name)
	}
}

// Who may issue what: intermediates only under roots of the 3-tier
// model, signers of such roots only under an intermediate, and only
// active, unexpired CAs issue or have their signers sign.
func TestIntermediateRules(t *testing.T) {
	e, _, c, ctx := newIntermediateEngine(t, "bolt", nil)
	plain, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("X")})
	require.NoError(t, err)
	assert.False(t, plain.UseIntermediateCA)
	_, err = e.CreateIntermediate(ctx, plain.ID, IntermediateInput{})
	assert.Equal(t, signer.KindInvalid, signer.KindOf(err))
	assert.Equal(t, "path", signer.AsError(err).Fields[0].Location)
	_, err = e.CreateIntermediate(ctx, "not-a-uuid", IntermediateInput{})
	assert.Equal(t, signer.KindInvalid, signer.KindOf(err))
	_, err = e.CreateIntermediate(ctx, "00000000-0000-4000-8000-000000000000", IntermediateInput{})
	assert.Equal(t, signer.KindNotFound, signer.KindOf(err))

	root, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("X"), UseIntermediateCA: yes(),
		NotAfter: str(c.t.AddDate(2, 0, 0).Format(time.RFC3339))})
	require.NoError(t, err)
	m, err := e.CreateIntermediate(ctx, root.ID, IntermediateInput{Usages: &[]string{"VICAL"}})
	require.NoError(t, err)

	// Signers: the root of the 3-tier model issues only through an
	// intermediate; caId, when given, must be the intermediate's root.
	_, err = e.CreateSignerIn(ctx, SignerInput{CAID: &root.ID})
	assert.Equal(t, signer.KindInvalid, signer.KindOf(err))
	assert.Equal(t, "intermediateCaId", signer.AsError(err).Fields[0].Field)
	_, err = e.CreateSignerIn(ctx, SignerInput{CAID: &plain.ID, IntermediateCAID: &m.ID})
	assert.Equal(t, "caId", signer.AsError(err).Fields[0].Field)
	_, err = e.CreateSignerIn(ctx, SignerInput{})
	assert.Equal(t, "caId", signer.AsError(err).Fields[0].Field)
	_, err = e.CreateSignerIn(ctx, SignerInput{IntermediateCAID: str("nope")})
	assert.Equal(t, "intermediateCaId", signer.AsError(err).Fields[0].Field)
	missing := "00000000-0000-4000-8000-000000000000"
	_, err = e.CreateSignerIn(ctx, SignerInput{IntermediateCAID: &missing})
	assert.Equal(t, signer.KindNotFound, signer.KindOf(err))
	s, err := e.CreateSignerIn(ctx, SignerInput{CAID: &root.ID, IntermediateCAID: &m.ID})
	require.NoError(t, err)
	_, err = e.UpdateSigner(ctx, s.ID, SignerUpdate{Active: yes()})
	require.NoError(t, err)
	_, err = e.Sign(ctx, s.ID, []byte("x"), nil)
	require.NoError(t, err)

	// An inactive intermediate neither issues nor has its signers sign.
	off := false
	got, err := e.UpdateIntermediate(ctx, root.ID, m.ID, IntermediateUpdate{Active: &off})
	require.NoError(t, err)
	assert.False(t, got.Active)
	_, err = e.CreateSignerIn(ctx, SignerInput{IntermediateCAID: &m.ID})
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
	_, err = e.Sign(ctx, s.ID, []byte("x"), nil)
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
	_, err = e.UpdateIntermediate(ctx, root.ID, m.ID, IntermediateUpdate{Active: yes(), Usages: &[]string{"VICAL"}})
	require.NoError(t, err)

	// So does an inactive root, for its intermediates and their signers.
	_, err = e.UpdateRoot(ctx, root.ID, &off, nil, nil)
	require.NoError(t, err)
	_, err = e.CreateIntermediate(ctx, root.ID, IntermediateInput{})
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
	_, err = e.CreateSignerIn(ctx, SignerInput{IntermediateCAID: &m.ID})
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
	_, err = e.Sign(ctx, s.ID, []byte("x"), nil)
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
	_, err = e.UpdateRoot(ctx, root.ID, yes(), nil, nil)
	require.NoError(t, err)

	// Updates need a field and a valid path; another root's path does not
	// find the intermediate.
	_, err = e.UpdateIntermediate(ctx, root.ID, m.ID, IntermediateUpdate{})
	assert.Equal(t, "active", signer.AsError(err).Fields[0].Field)
	_, err = e.UpdateIntermediate(ctx, root.ID, m.ID, IntermediateUpdate{Usages: &[]string{"X"}})
	assert.Equal(t, "usages", signer.AsError(err).Fields[0].Field)
	_, err = e.GetIntermediate(ctx, plain.ID, m.ID)
	assert.Equal(t, signer.KindNotFound, signer.KindOf(err))
	assert.Equal(t, signer.KindNotFound, signer.KindOf(e.DeleteIntermediate(ctx, plain.ID, m.ID)))
	_, err = e.GetIntermediate(ctx, root.ID, "x")
	assert.Equal(t, "intermediateId", signer.AsError(err).Fields[0].Field)

	// After the intermediate expires, nothing is issued under it.
	c.t = m.NotAfter.Add(time.Second)
	_, err = e.CreateSignerIn(ctx, SignerInput{IntermediateCAID: &m.ID})
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
	_, err = e.Sign(ctx, s.ID, []byte("x"), nil)
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
}

// The quota of intermediates is configurable and enforced at commit: a
// create the fast check let through is refused by the store and its HSM
// key destroyed; a deletion frees a unit.
func TestIntermediateQuota(t *testing.T) {
	e, h, _, ctx := newIntermediateEngine(t, "bolt", map[string]int64{QuotaIntermediates: 2})
	assert.Equal(t, int64(2), e.core.QuotaLimit(QuotaIntermediates))
	root, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("X"), UseIntermediateCA: yes()})
	require.NoError(t, err)
	var ids []string
	for i := 0; i < 2; i++ {
		m, err := e.CreateIntermediate(ctx, root.ID, IntermediateInput{})
		require.NoError(t, err)
		ids = append(ids, m.ID)
	}
	_, err = e.CreateIntermediate(ctx, root.ID, IntermediateInput{})
	assert.Equal(t, signer.KindQuotaExceeded, signer.KindOf(err))
	assert.Equal(t, 3, hsmKeys(t, h))

	e.racy.on.Store(true)
	_, err = e.CreateIntermediate(ctx, root.ID, IntermediateInput{})
	e.racy.on.Store(false)
	assert.Equal(t, signer.KindQuotaExceeded, signer.KindOf(err))
	assert.True(t, e.racy.fooled.Load())
	assert.Equal(t, 3, hsmKeys(t, h), "the refused create's key is destroyed")
	intents, err := e.core.Store().ListIntents(context.Background())
	require.NoError(t, err)
	assert.Empty(t, intents)
	idx, err := e.core.Store().List(context.Background(), store.Query{Kind: kindIntermediateIndex, Tenant: store.PlatformTenant})
	require.NoError(t, err)
	assert.Len(t, idx.Records, 2, "no index entry outlives a refused create")

	require.NoError(t, e.DeleteIntermediate(ctx, root.ID, ids[0]))
	assert.Equal(t, 2, hsmKeys(t, h))
	_, err = e.CreateIntermediate(ctx, root.ID, IntermediateInput{})
	require.NoError(t, err)

	page, next, err := e.ListIntermediates(ctx, root.ID, ListParams{Limit: 1})
	require.NoError(t, err)
	require.Len(t, page, 1)
	assert.Equal(t, ids[1], page[0].ID)
	page, next, err = e.ListIntermediates(ctx, root.ID, ListParams{Limit: 1, Cursor: next})
	require.NoError(t, err)
	require.Len(t, page, 1)
	assert.Empty(t, next)
}

func crlOf(t *testing.T, der []byte, err error, issuer *x509.Certificate) *x509.RevocationList {
	t.Helper()
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(issuer))
	return crl
}

func serialsOf(crl *x509.RevocationList) []string {
	var out []string
	for _, r := range crl.RevokedCertificateEntries {
		out = append(out, r.SerialNumber.Text(16))
	}
	return out
}

// A managed intermediate publishes its own CRL, listing the signers it
// issued once deleted, refreshed by its janitor with increasing numbers;
// deleting the intermediate destroys its key and revokes it on the
// root's CRL.
func TestIntermediateCRLsAndDeletion(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e, h, c, ctx := newIntermediateEngine(t, backend, nil)
			root, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("X"), UseIntermediateCA: yes()})
			require.NoError(t, err)
			rootCert := certOf(t, root.CertificatePEM)
			m, err := e.CreateIntermediate(ctx, root.ID, IntermediateInput{})
			require.NoError(t, err)
			ic := certOf(t, m.CertificatePEM)
			pub := context.Background()
			der, err := e.IntermediateCRL(pub, root.ID, m.ID)
			crl := crlOf(t, der, err, ic)
			assert.Equal(t, int64(1), crl.Number.Int64())
			assert.Empty(t, crl.RevokedCertificateEntries)
			_, err = e.IntermediateCRL(pub, "00000000-0000-4000-8000-000000000000", m.ID)
			assert.Equal(t, signer.KindNotFound, signer.KindOf(err), "only under its own root")

			s, err := e.CreateSignerIn(ctx, SignerInput{IntermediateCAID: &m.ID})
			require.NoError(t, err)
			sc := certOf(t, s.CertificatePEM)
			require.NoError(t, e.DeleteSigner(ctx, s.ID))
			der, err = e.IntermediateCRL(pub, root.ID, m.ID)
			crl = crlOf(t, der, err, ic)
			assert.Equal(t, int64(2), crl.Number.Int64())
			assert.Equal(t, []string{sc.SerialNumber.Text(16)}, serialsOf(crl))
			der, err = e.RootCRL(pub, root.ID)
			assert.Empty(t, crlOf(t, der, err, rootCert).RevokedCertificateEntries, "the signer is not the root's")

			// The janitor re-signs it once crlRefresh has passed.
			n, err := e.refreshDueIntermediateCRLs(ctx)
			require.NoError(t, err)
			assert.Equal(t, 0, n)
			c.t = c.t.Add(crlRefresh + time.Minute)
			n, err = e.refreshDueIntermediateCRLs(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			der, err = e.IntermediateCRL(pub, root.ID, m.ID)
			assert.Equal(t, int64(3), crlOf(t, der, err, ic).Number.Int64())

			keys := hsmKeys(t, h)
			require.NoError(t, e.DeleteIntermediate(ctx, root.ID, m.ID))
			assert.Equal(t, keys-1, hsmKeys(t, h), "the intermediate's key is destroyed")
			_, err = e.GetIntermediate(ctx, root.ID, m.ID)
			assert.Equal(t, signer.KindNotFound, signer.KindOf(err))
			_, err = e.IntermediateCRL(pub, root.ID, m.ID)
			assert.Equal(t, signer.KindNotFound, signer.KindOf(err))
			der, err = e.RootCRL(pub, root.ID)
			assert.Equal(t, []string{ic.SerialNumber.Text(16)}, serialsOf(crlOf(t, der, err, rootCert)))
			_, err = e.core.Store().Get(ctx, kindCRL, "t1", m.ID)
			assert.ErrorIs(t, err, store.ErrNotFound)
			used, err := e.core.Store().QuotaUsage(ctx, "t1", QuotaIntermediates)
			require.NoError(t, err)
			assert.Equal(t, int64(0), used)
		})
	}
}

// Deleting a root leaves its intermediates, as it leaves its signers:
// they stay listed and deletable under its id, issue nothing, and their
// signers no longer sign.
func TestIntermediatesOfADeletedRoot(t *testing.T) {
	e, h, _, ctx := newIntermediateEngine(t, "bolt", nil)
	root, err := e.CreateRoot(ctx, RootInput{OrganisationName: str("X"), UseIntermediateCA: yes()})
	require.NoError(t, err)
	m, err := e.CreateIntermediate(ctx, root.ID, IntermediateInput{})
	require.NoError(t, err)
	s, err := e.CreateSignerIn(ctx, SignerInput{IntermediateCAID: &m.ID})
	require.NoError(t, err)
	_, err = e.UpdateSigner(ctx, s.ID, SignerUpdate{Active: yes()})
	require.NoError(t, err)
	require.NoError(t, e.DeleteRoot(ctx, root.ID))
	assert.Equal(t, 2, hsmKeys(t, h), "the root's key is destroyed")

	list, _, err := e.ListIntermediates(ctx, root.ID, ListParams{})
	require.NoError(t, err)
	require.Len(t, list, 1)
	_, err = e.Sign(ctx, s.ID, []byte("x"), nil)
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
	_, err = e.CreateSignerIn(ctx, SignerInput{IntermediateCAID: &m.ID})
	assert.Equal(t, signer.KindWrongState, signer.KindOf(err))
	_, err = e.CreateIntermediate(ctx, root.ID, IntermediateInput{})
	assert.Equal(t, signer.KindNotFound, signer.KindOf(err))

	require.NoError(t, e.DeleteIntermediate(ctx, root.ID, m.ID))
	require.NoError(t, e.DeleteSigner(ctx, s.ID))
	assert.Equal(t, 0, hsmKeys(t, h))
	_, _, err = e.ListIntermediates(ctx, root.ID, ListParams{})
	assert.Equal(t, signer.KindNotFound, signer.KindOf(err), "a root that neither exists nor has intermediates")
}

// extCA is a CA whose key the test holds, as an operator's offline PKI.
type extCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newExtCA(t *testing.T, parent *extCA, cn string, pathLen int) *extCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:   pkix.Name{CommonName: cn, Organization: []string{"Ext"}, Country: []string{"NZ"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		MaxPathLen: pathLen, MaxPathLenZero: pathLen == 0}
	issuer, signKey := tmpl, key
	if parent != nil {
		issuer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signKey)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &extCA{cert: c, key: key}
}

func (ca *extCA) pem() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
}

func (ca *extCA) issueLeaf(t *testing.T, pub any) string {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "VICAL Signer"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// Under an unmanaged root (MATTR VII's case) the operator uploads the
// intermediate its root issued, and the certificates of the signers under
// it, which must chain to that intermediate.
func TestIntermediateUploaded(t *testing.T) {
	e, h, c, ctx := newIntermediateEngine(t, "bolt", nil)
	// A root whose path length forbids intermediates cannot use them.
	strict := newExtCA(t, nil, "Strict IACA", 0)
	_, err := e.CreateRoot(ctx, RootInput{CertificatePEM: str(strict.pem()), UseIntermediateCA: yes()})
	assert.Equal(t, "useIntermediateCa", signer.AsError(err).Fields[0].Field)

	ext := newExtCA(t, nil, "External IACA", 1)
	root, err := e.CreateRoot(ctx, RootInput{CertificatePEM: str(ext.pem()), UseIntermediateCA: yes()})
	require.NoError(t, err)
	assert.True(t, root.UseIntermediateCA)
	inter := newExtCA(t, ext, "External Intermediate", 0)

	notYet := newExtCA(t, ext, "Future Intermediate", 0)
	c.t = notYet.cert.NotBefore.Add(-time.Minute)
	_, err = e.CreateIntermediate(ctx, root.ID, IntermediateInput{CertificatePEM: str(notYet.pem())})
	assert.Contains(t, signer.AsError(err).Fields[0].Msg, "not valid yet")
	c.t = time.Now().UTC()
	for name, pemText := range map[string]string{
		"not issued by the root":  newExtCA(t, newExtCA(t, nil, "Other", 1), "Other Intermediate", 0).pem(),
		"the root itself":         ext.pem(),
		"an end-entity":           ext.issueLeaf(t, &inter.key.PublicKey),
		"not a certificate":       "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
		"without certificatePem:": "",
	} {
		in := IntermediateInput{}
		if pemText != "" {
			in.CertificatePEM = str(pemText)
		}
		_, err := e.CreateIntermediate(ctx, root.ID, in)
		assert.Equal(t, signer.KindInvalid, signer.KindOf(err), name)
		assert.Equal(t, "certificatePem", signer.AsError(err).Fields[0].Field, name)
	}
	_, err = e.CreateIntermediate(ctx, root.ID, IntermediateInput{CertificatePEM: str(inter.pem()), CommonName: str("x")})
	assert.Equal(t, "commonName", signer.AsError(err).Fields[0].Field)

	m, err := e.CreateIntermediate(ctx, root.ID, IntermediateInput{CertificatePEM: str(inter.pem())})
	require.NoError(t, err)
	assert.False(t, m.Managed)
	assert.Equal(t, "External Intermediate", m.CommonName)
	assert.Equal(t, 0, hsmKeys(t, h), "no key is held for an uploaded intermediate")
	_, err = e.CreateIntermediate(ctx, root.ID, IntermediateInput{CertificatePEM: str(inter.pem())})
	assert.Equal(t, signer.KindConflict, signer.KindOf(err))
	_, err = e.IntermediateCRL(context.Background(), root.ID, m.ID)
	assert.Equal(t, ReasonNoCRL, signer.ReasonOf(err))

	s, err := e.CreateSignerIn(ctx, SignerInput{IntermediateCAID: &m.ID})
	require.NoError(t, err)
	assert.Empty(t, s.CertificatePEM, "an uploaded intermediate issues nothing here")
	b, _ := pem.Decode([]byte(s.CSRPEM))
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	require.NoError(t, err)
	_, err = e.UpdateSigner(ctx, s.ID, SignerUpdate{CertificatePEM: str(ext.issueLeaf(t, csr.PublicKey))})
	assert.Equal(t, signer.KindInvalid, signer.KindOf(err), "issued by the root, not by the signer's intermediate")
	assert.Contains(t, signer.AsError(err).Fields[0].Msg, "intermediate")
	good := inter.issueLeaf(t, csr.PublicKey)
	v, err := e.UpdateSigner(ctx, s.ID, SignerUpdate{CertificatePEM: str(good), Active: yes()})
	require.NoError(t, err)
	assert.Equal(t, good, v.CertificatePEM)
	assert.Equal(t, inter.pem()+ext.pem(), v.ChainPEM)
	_, err = e.Sign(ctx, s.ID, []byte("x"), nil)
	require.NoError(t, err)
	require.NoError(t, e.DeleteSigner(ctx, s.ID))
	require.NoError(t, e.DeleteIntermediate(ctx, root.ID, m.ID))
}
