package signer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func selfSigned(t *testing.T, cn string) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	return der
}

// parseCert decodes as a cache of CA certificates does (the PCA family's).
func parseCert(der []byte) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, errors.New("CA has no certificate")
	}
	return x509.ParseCertificate(der)
}

// The cache answers a certificate only for its own bytes, and a parse
// error is returned each time, never cached.
func TestCertCacheKeysOnTheCertificateBytes(t *testing.T) {
	c := NewBytesCache(parseCert)
	a, b := selfSigned(t, "a"), selfSigned(t, "b")
	ca, err := c.Get(a)
	require.NoError(t, err)
	again, err := c.Get(append([]byte(nil), a...))
	require.NoError(t, err)
	assert.Same(t, ca, again)
	cb, err := c.Get(b)
	require.NoError(t, err)
	assert.Equal(t, "b", cb.Subject.CommonName)
	assert.Equal(t, "a", ca.Subject.CommonName)

	_, err = c.Get(nil)
	assert.Error(t, err)
	bad := append([]byte(nil), a[:len(a)-3]...)
	_, err = c.Get(bad)
	assert.Error(t, err)
	_, err = c.Get(bad)
	assert.Error(t, err)
	assert.Len(t, c.m, 2)

	for i := range bytesCacheMax + 5 {
		c.m[string(rune(i))] = ca
	}
	_, err = c.Get(selfSigned(t, "c"))
	require.NoError(t, err)
	assert.LessOrEqual(t, len(c.m), bytesCacheMax, "the cache stays bounded")
}

// Decoded tokens are reused only for identical stored bytes: a token
// record changed anywhere (revoked roles, a new expiry) decodes afresh.
func TestTokenCacheKeysOnTheStoredBytes(t *testing.T) {
	c := JSONCache[Token]()
	a := []byte(`{"id":"t1","tenant":"acme","roles":["admin"],"hash":"h"}`)
	b := []byte(`{"id":"t1","tenant":"acme","roles":["auditor"],"hash":"h","expiresAt":"2020-01-01T00:00:00Z"}`)
	ta, err := c.Get(a)
	require.NoError(t, err)
	assert.Equal(t, []string{"admin"}, ta.Roles)
	again, err := c.Get(a)
	require.NoError(t, err)
	assert.Equal(t, ta, again)
	tb, err := c.Get(b)
	require.NoError(t, err)
	assert.Equal(t, []string{"auditor"}, tb.Roles)
	require.NotNil(t, tb.ExpiresAt)
	_, err = c.Get([]byte(`{"id":`))
	assert.Error(t, err)
	_, err = c.Get([]byte(`{"id":`))
	assert.Error(t, err, "a decode error is never cached")
}
