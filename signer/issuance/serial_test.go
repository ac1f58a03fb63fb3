package issuance

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRandomSerialIsPositiveAndShort(t *testing.T) {
	for i := 0; i < 2000; i++ {
		n, err := RandomSerial()
		require.NoError(t, err)
		require.Equal(t, 1, n.Sign())
		der, err := asn1.Marshal(n)
		require.NoError(t, err)
		require.LessOrEqual(t, len(der)-2, 20)
	}
}

// Go writes RFC 7093's identifier into a CA certificate that has none,
// so that is what KeyIDSHA256 must give.
func TestKeyIDSHA256IsGosDefault(t *testing.T) {
	k := ecKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "go"},
		NotBefore: t0, NotAfter: t1, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	id, err := KeyID(k.Public(), KeyIDSHA256)
	require.NoError(t, err)
	assert.Equal(t, c.SubjectKeyId, id)
}

// Both methods hash the subjectPublicKey bits, which for an EC key are
// its uncompressed point.
func TestKeyIDMethodsHashTheKeyBits(t *testing.T) {
	k := ecKey(t)
	pt, err := k.PublicKey.Bytes()
	require.NoError(t, err)
	id, err := KeyID(k.Public(), KeyIDSHA256)
	require.NoError(t, err)
	sum := sha256.Sum256(pt)
	assert.Equal(t, sum[:20], id)
	id, err = KeyID(k.Public(), KeyIDSHA1)
	require.NoError(t, err)
	sum1 := sha1.Sum(pt)
	assert.Equal(t, sum1[:], id)
	_, err = KeyID(&ecdsa.PublicKey{}, KeyIDSHA256)
	assert.Error(t, err)
}
