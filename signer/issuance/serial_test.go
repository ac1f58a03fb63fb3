package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewSerialIsPositiveAndShort(t *testing.T) {
	for i := 0; i < 2000; i++ {
		n, err := NewSerial()
		require.NoError(t, err)
		require.Equal(t, 1, n.Sign())
		der, err := asn1.Marshal(n)
		require.NoError(t, err)
		require.Equal(t, 20, len(der)-2, "20 octets, no sign octet")
	}
}

// A serial starts with the time in milliseconds, so serials follow the
// order of issuance, and ends with 112 random bits.
func TestNewSerialStartsWithTheTime(t *testing.T) {
	at := time.UnixMilli(1764763200123) // 2025-12-03 12:00:00.123 UTC
	a, err := serialAt(at)
	require.NoError(t, err)
	b, err := serialAt(at)
	require.NoError(t, err)
	c, err := serialAt(at.Add(time.Millisecond))
	require.NoError(t, err)
	ab, bb := a.FillBytes(make([]byte, 20)), b.FillBytes(make([]byte, 20))
	assert.Equal(t, []byte{0x01, 0x9a, 0xe4, 0x15, 0x6a, 0x7b}, ab[:6], "the time in ms, big-endian")
	assert.Equal(t, ab[:6], bb[:6])
	assert.NotEqual(t, ab[6:], bb[6:], "the rest is random")
	assert.Equal(t, -1, a.Cmp(c))
	assert.Equal(t, -1, b.Cmp(c))
	// Far ahead the top bit is still clear: positive and 20 octets.
	far, err := serialAt(time.Date(4000, 1, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	der, err := asn1.Marshal(far)
	require.NoError(t, err)
	assert.Equal(t, 20, len(der)-2)
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

// TestSubjectPublicKeyBitsOfEachKeyType: the bits taken from the key's
// own encoding are those of its SubjectPublicKeyInfo.
func TestSubjectPublicKeyBitsOfEachKeyType(t *testing.T) {
	var keys []crypto.PublicKey
	for _, c := range []elliptic.Curve{elliptic.P224(), elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		require.NoError(t, err)
		keys = append(keys, k.Public())
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ek, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	keys = append(keys, rk.Public(), ek)
	for _, k := range keys {
		want, err := spkiBits(k)
		require.NoError(t, err)
		got, err := subjectPublicKeyBits(k)
		require.NoError(t, err)
		assert.Equal(t, want, got, "%T", k)
	}
}

// BenchmarkSubjectPublicKeyBits: the bits a key identifier hashes, from
// the key's own encoding and from an encoded SubjectPublicKeyInfo read
// back (a P-256 key, as most CSRs hold).
func BenchmarkSubjectPublicKeyBits(b *testing.B) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		f    func(crypto.PublicKey) ([]byte, error)
	}{{"own", subjectPublicKeyBits}, {"spki", spkiBits}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.f(k.Public()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
