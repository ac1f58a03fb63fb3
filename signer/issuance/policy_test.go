package issuance

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A subordinate CA carries anyPolicy alone; a root no policies, and a
// leaf under the subordinate still verifies (no policy is required).
func TestSubordinateCAPolicies(t *testing.T) {
	rootKey, subKey, leafKey := ecKey(t), ecKey(t), ecKey(t)
	r := root(t, rootKey)
	assert.Empty(t, r.Policies)
	der, err := SignCertificate(SubordinateCATemplate(pkix.Name{CommonName: "sub"}, t0, t1, 0, 0), r, subKey.Public(), rootKey, KeyIDSHA1)
	require.NoError(t, err)
	sub, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	require.Len(t, sub.Policies, 1)
	assert.Equal(t, "2.5.29.32.0", sub.Policies[0].String())
	assert.True(t, sub.IsCA)

	der, err = SignCertificate(EntityTemplate(t0, t1, x509.KeyUsageDigitalSignature, nil), sub, leafKey.Public(), subKey, KeyIDSHA1)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(r)
	inter.AddCert(sub)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: t0.AddDate(1, 0, 0),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	assert.NoError(t, err)
}

// The VICAL signer profile: digitalSignature and the critical
// id-mdl-kp-mdlVICAL extended key usage, nothing else as a purpose.
func TestVICALSignerExtendedKeyUsage(t *testing.T) {
	rootKey, key := ecKey(t), ecKey(t)
	r := root(t, rootKey)
	der, err := SignCertificate(VICALSignerTemplate(pkix.Name{CommonName: "VICAL signer"}, r, t0, t1), r, key.Public(), rootKey, KeyIDSHA256)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.Equal(t, x509.KeyUsageDigitalSignature, c.KeyUsage)
	assert.Empty(t, c.ExtKeyUsage)
	require.Len(t, c.UnknownExtKeyUsage, 1)
	assert.True(t, c.UnknownExtKeyUsage[0].Equal(OIDVICALSigner))
	for _, e := range c.Extensions {
		if e.Id.String() == "2.5.29.37" {
			assert.True(t, e.Critical)
		}
	}
}

// Without a requested hash, an EC key's curve picks it; a CRL always
// takes its EC key's curve hash, and an RSA CA's own hash.
func TestDefaultHashes(t *testing.T) {
	for alg, h := range map[string]string{"EC256": SHA256, "EC384": SHA384, "EC521": SHA512, "RSA2048": SHA256, "ED25519": SHA256} {
		assert.Equal(t, h, DefaultHash(alg), alg)
	}
	assert.Equal(t, x509.ECDSAWithSHA256, CRLSignatureAlgorithm("EC256", SHA512))
	assert.Equal(t, x509.ECDSAWithSHA384, CRLSignatureAlgorithm("EC384", SHA256))
	assert.Equal(t, x509.SHA512WithRSA, CRLSignatureAlgorithm("RSA2048", SHA512))
	assert.Equal(t, x509.PureEd25519, CRLSignatureAlgorithm("ED25519", SHA256))
}
