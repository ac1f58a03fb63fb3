package encoding

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Test material is made in memory: these tests need no HSM.

func ecKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(tb, err)
	return k
}

// selfSigned is a certificate of key named cn, as DER.
func selfSigned(tb testing.TB, key crypto.Signer, cn string) []byte {
	tb.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(tb, err)
	return der
}

func certPEM(tb testing.TB, cn string) (string, []byte) {
	tb.Helper()
	der := selfSigned(tb, ecKey(tb), cn)
	return EncodePEM("CERTIFICATE", der), der
}

func csrDERFor(tb testing.TB, key crypto.Signer) []byte {
	tb.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "csr"}, DNSNames: []string{"a.example"}}, key)
	require.NoError(tb, err)
	return der
}

func pkcs8PEM(tb testing.TB, key any) (string, []byte) {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(tb, err)
	return EncodePEM("PRIVATE KEY", der), der
}
