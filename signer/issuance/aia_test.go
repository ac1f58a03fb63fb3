package issuance

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	oidCRLDistributionPoints = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidAuthorityInfoAccess   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
)

func extensionIDs(c *x509.Certificate) []string {
	var out []string
	for _, e := range c.Extensions {
		out = append(out, e.Id.String())
	}
	return out
}

// The issuer's URLs become one CRL distribution point and the AIA
// caIssuers and OCSP entries, none of them critical.
func TestAddIssuerURLs(t *testing.T) {
	rootKey, leafKey := ecKey(t), ecKey(t)
	r := root(t, rootKey)
	u := IssuerURLs{CRL: "https://ca.example.com/ca/1/crl", CAIssuers: "https://ca.example.com/ca/1/certificate",
		OCSP: "https://ca.example.com/ocsp"}
	tmpl := EntityTemplate(t0, t1, x509.KeyUsageDigitalSignature, nil)
	tmpl.Subject = pkix.Name{CommonName: "leaf"}
	AddIssuerURLs(tmpl, u)
	der, err := SignCertificate(tmpl, r, leafKey.Public(), rootKey, KeyIDSHA1)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.Equal(t, []string{u.CRL}, leaf.CRLDistributionPoints)
	assert.Equal(t, []string{u.CAIssuers}, leaf.IssuingCertificateURL)
	assert.Equal(t, []string{u.OCSP}, leaf.OCSPServer)
	for _, e := range leaf.Extensions {
		if e.Id.Equal(oidCRLDistributionPoints) || e.Id.Equal(oidAuthorityInfoAccess) {
			assert.False(t, e.Critical, e.Id.String())
		}
	}

	// OCSP off for the issuer: caIssuers alone in the AIA.
	tmpl = EntityTemplate(t0, t1, x509.KeyUsageDigitalSignature, nil)
	AddIssuerURLs(tmpl, IssuerURLs{CRL: u.CRL, CAIssuers: u.CAIssuers})
	der, err = SignCertificate(tmpl, r, leafKey.Public(), rootKey, KeyIDSHA1)
	require.NoError(t, err)
	leaf, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.Equal(t, []string{u.CAIssuers}, leaf.IssuingCertificateURL)
	assert.Empty(t, leaf.OCSPServer)
}

// No public base URL: the zero IssuerURLs changes nothing, and the
// certificate has neither extension.
func TestAddIssuerURLsZeroChangesNothing(t *testing.T) {
	rootKey, leafKey := ecKey(t), ecKey(t)
	r := root(t, rootKey)
	tmpl := EntityTemplate(t0, t1, x509.KeyUsageDigitalSignature, nil)
	before := *tmpl
	AddIssuerURLs(tmpl, IssuerURLs{})
	assert.Equal(t, before, *tmpl)
	der, err := SignCertificate(tmpl, r, leafKey.Public(), rootKey, KeyIDSHA1)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.NotContains(t, extensionIDs(leaf), oidCRLDistributionPoints.String())
	assert.NotContains(t, extensionIDs(leaf), oidAuthorityInfoAccess.String())
}

// Root profiles carry neither a CRL distribution point nor an AIA: a
// root has no issuer to point at.
func TestRootProfilesNameNoIssuerURLs(t *testing.T) {
	key := ecKey(t)
	ian, err := IssuerAltNameExtension("https://ca.example.com")
	require.NoError(t, err)
	for name, tmpl := range map[string]*x509.Certificate{
		"pca root": CATemplate(pkix.Name{CommonName: "root"}, t0, t1, UnlimitedPathLength, 0),
		"dts root": IACARootTemplate(pkix.Name{CommonName: "iaca"}, t0, t1, ian),
	} {
		der, err := SignCertificate(tmpl, nil, key.Public(), key, KeyIDSHA1)
		require.NoError(t, err, name)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err, name)
		assert.NotContains(t, extensionIDs(c), oidCRLDistributionPoints.String(), name)
		assert.NotContains(t, extensionIDs(c), oidAuthorityInfoAccess.String(), name)
	}
}
