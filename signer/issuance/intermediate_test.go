package issuance

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The 3-tier DTS profiles: a root with path length 1, an intermediate CA
// with path length 0 carrying the root's issuer alternative name, and a
// VICAL signer under it; crypto/x509 validates the chain.
func TestDTSIntermediateProfiles(t *testing.T) {
	ian, err := IssuerAltNameExtension("pki@example.com")
	require.NoError(t, err)
	rootKey, interKey, signerKey := ecKey(t), ecKey(t), ecKey(t)
	der, err := SignCertificate(IACARootForIntermediatesTemplate(pkix.Name{CommonName: "IACA", Country: []string{"NZ"}}, t0, t1, ian),
		nil, rootKey.Public(), rootKey, KeyIDSHA256)
	require.NoError(t, err)
	root, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.Equal(t, 1, root.MaxPathLen)
	assert.True(t, AllowsIntermediate(root))

	sub := pkix.Name{CommonName: "Intermediate", Country: []string{"NZ"}, Organization: []string{"O"}}
	der, err = SignCertificate(DTSIntermediateTemplate(sub, root, t0, t0.AddDate(5, 0, 0)), root, interKey.Public(), rootKey, KeyIDSHA256)
	require.NoError(t, err)
	inter, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.True(t, inter.IsCA)
	assert.True(t, inter.MaxPathLenZero)
	assert.False(t, AllowsIntermediate(inter))
	assert.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, inter.KeyUsage)
	assert.Equal(t, root.SubjectKeyId, inter.AuthorityKeyId)
	require.NotNil(t, IssuerAltNameOf(inter))
	assert.Equal(t, ian.Value, IssuerAltNameOf(inter).Value)

	der, err = SignCertificate(VICALSignerTemplate(pkix.Name{CommonName: "VICAL Signer"}, inter, t0, t0.AddDate(1, 0, 0)),
		inter, signerKey.Public(), interKey, KeyIDSHA256)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.Equal(t, ian.Value, IssuerAltNameOf(leaf).Value)
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inters.AddCert(inter)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: t0.AddDate(0, 1, 0),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err)

	// Under an IACA root of path length 0 the same chain is refused.
	der, err = SignCertificate(IACARootTemplate(pkix.Name{CommonName: "IACA"}, t0, t1, nil), nil, rootKey.Public(), rootKey, KeyIDSHA256)
	require.NoError(t, err)
	strict, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.False(t, AllowsIntermediate(strict))
	assert.Nil(t, IssuerAltNameOf(strict))
	der, err = SignCertificate(DTSIntermediateTemplate(sub, strict, t0, t0.AddDate(5, 0, 0)), strict, interKey.Public(), rootKey, KeyIDSHA256)
	require.NoError(t, err)
	inter2, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	roots, inters = x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(strict)
	inters.AddCert(inter2)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: t0.AddDate(0, 1, 0),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	var invalid x509.CertificateInvalidError
	require.ErrorAs(t, err, &invalid)
	assert.Equal(t, x509.TooManyIntermediates, invalid.Reason, "path length 0 allows no intermediate")
}
