package encoding

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"math/big"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
)

// rsaOfBits is a public key whose modulus has bits bits: the names and
// limits read only the size, and generating small or huge keys is slow or
// refused.
func rsaOfBits(bits int) *rsa.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	return &rsa.PublicKey{N: n.Add(n, big.NewInt(1)), E: 65537}
}

func ecOn(tb testing.TB, c elliptic.Curve) *ecdsa.PublicKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	require.NoError(tb, err)
	return &k.PublicKey
}

func TestKeyAlgorithmNamesWhatHsmcaTakes(t *testing.T) {
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		pub  crypto.PublicKey
		alg  hsm.Algorithm
		bits int
	}{
		"RSA2048": {rsaOfBits(2048), hsm.RSA2048, 2048},
		"RSA3000": {rsaOfBits(3000), "RSA3000", 3000},
		"RSA8192": {rsaOfBits(8192), "RSA8192", 8192},
		"P-256":   {ecOn(t, elliptic.P256()), hsm.EC256, 256},
		"P-384":   {ecOn(t, elliptic.P384()), hsm.EC384, 384},
		"P-521":   {ecOn(t, elliptic.P521()), hsm.EC521, 521},
		"Ed25519": {edPub, hsm.ED25519, 256},
	} {
		t.Run(name, func(t *testing.T) {
			alg, bits, err := KeyAlgorithm(tc.pub)
			require.NoError(t, err)
			assert.Equal(t, tc.alg, alg)
			assert.Equal(t, tc.bits, bits)
			assert.Equal(t, hsm.AlgorithmOf(tc.pub), alg, "the one namer is the HSM layer's")
		})
	}
}

func TestKeyAlgorithmRefusals(t *testing.T) {
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		pub   crypto.PublicKey
		value any
	}{
		"RSA1024": {rsaOfBits(1024), 1024},
		"RSA2047": {rsaOfBits(2047), 2047},
		"RSA8200": {rsaOfBits(8200), 8200},
		"P-224":   {ecOn(t, elliptic.P224()), "P-224"},
		"X25519":  {x.PublicKey(), nil},
	} {
		t.Run(name, func(t *testing.T) {
			alg, _, err := KeyAlgorithm(tc.pub)
			require.Error(t, err)
			assert.Empty(t, alg)
			assert.Equal(t, UnsupportedKey, ReasonOf(err))
			assert.Equal(t, tc.value, err.(*Error).Value)
		})
	}
}

func TestPublicKeyPEMRoundTripAndEquality(t *testing.T) {
	a, b := ecOn(t, elliptic.P256()), ecOn(t, elliptic.P256())
	p, err := PublicKeyPEM(a)
	require.NoError(t, err)
	back, err := ParsePublicKeyPEM(p)
	require.NoError(t, err)
	assert.True(t, PublicKeysEqual(a, back))
	assert.False(t, PublicKeysEqual(a, b))
	assert.False(t, PublicKeysEqual(struct{}{}, a), "a type without Equal is never equal")
	_, err = ParsePublicKeyPEM("nope")
	assert.Error(t, err)
}

func TestPublicJWK(t *testing.T) {
	ec := ecOn(t, elliptic.P384())
	j, err := PublicJWK(ec, "k1")
	require.NoError(t, err)
	assert.Equal(t, "EC", j["kty"])
	assert.Equal(t, "P-384", j["crv"])
	assert.Equal(t, "k1", j["kid"])
	x, err := base64.RawURLEncoding.DecodeString(j["x"].(string))
	require.NoError(t, err)
	y, err := base64.RawURLEncoding.DecodeString(j["y"].(string))
	require.NoError(t, err)
	assert.Len(t, x, 48, "coordinates keep their leading zeros")
	assert.Equal(t, 0, new(big.Int).SetBytes(x).Cmp(ec.X))
	assert.Equal(t, 0, new(big.Int).SetBytes(y).Cmp(ec.Y))

	j, err = PublicJWK(rsaOfBits(2048), "k2")
	require.NoError(t, err)
	assert.Equal(t, "RSA", j["kty"])
	assert.Equal(t, "AQAB", j["e"])

	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	j, err = PublicJWK(edPub, "k3")
	require.NoError(t, err)
	assert.Equal(t, "OKP", j["kty"])
	assert.Equal(t, base64.RawURLEncoding.EncodeToString(edPub), j["x"])

	_, err = PublicJWK(struct{}{}, "k4")
	assert.Error(t, err)
}
