package pca

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

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
)

// crlIssuer refuses a certificate whose keyUsage lacks cRLSign, and
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
	_, err = crlIssuer(mk(x509.KeyUsageCertSign))
	require.Error(t, err)
	assert.Equal(t, ReasonNoCRLSign, signer.ReasonOf(err))

	bare := mk(0)
	bare.SubjectKeyId = nil // as parsed from a certificate without the extension
	is, err := crlIssuer(bare)
	require.NoError(t, err)
	assert.Nil(t, bare.SubjectKeyId, "the certificate itself is not changed")
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, is, key)
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(bare))
	ski, err := issuance.KeyID(key.Public(), issuance.KeyIDSHA1)
	require.NoError(t, err)
	assert.Equal(t, ski, crl.AuthorityKeyId)

	full := mk(x509.KeyUsageCertSign | x509.KeyUsageCRLSign)
	is, err = crlIssuer(full)
	require.NoError(t, err)
	assert.Same(t, full, is)
}
