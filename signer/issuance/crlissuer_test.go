package issuance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// CRLIssuer refuses a certificate whose keyUsage lacks cRLSign, and
// completes one without keyUsage or subject key identifier so that Go
// signs CRLs for it; the CRL verifies against the certificate as it is.
func TestCRLIssuerCompletesCertificates(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	mk := func(ku x509.KeyUsage) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: ku}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return c
	}
	assert.False(t, CanSignCRLs(mk(x509.KeyUsageCertSign)))
	_, err = CRLIssuer(mk(x509.KeyUsageCertSign))
	require.Error(t, err)

	bare := mk(0)
	bare.SubjectKeyId = nil // as parsed from a certificate without the extension
	assert.True(t, CanSignCRLs(bare))
	is, err := CRLIssuer(bare)
	require.NoError(t, err)
	assert.Nil(t, bare.SubjectKeyId, "the certificate itself is not changed")
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, is, key)
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(bare))
	ski, err := KeyID(key.Public(), KeyIDSHA1)
	require.NoError(t, err)
	assert.Equal(t, ski, crl.AuthorityKeyId)

	full := mk(x509.KeyUsageCertSign | x509.KeyUsageCRLSign)
	is, err = CRLIssuer(full)
	require.NoError(t, err)
	assert.Same(t, full, is)
}
