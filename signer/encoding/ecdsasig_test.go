package encoding

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestECDSASignatureForms(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		t.Run(c.Params().Name, func(t *testing.T) {
			k, err := ecdsa.GenerateKey(c, rand.Reader)
			require.NoError(t, err)
			digest := sha256.Sum256([]byte("payload"))
			der, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
			require.NoError(t, err)
			raw, err := ECDSARawFromDER(der, &k.PublicKey)
			require.NoError(t, err)
			assert.Len(t, raw, 2*((c.Params().BitSize+7)/8))
			r, s, ok := ECDSAFromRaw(raw, &k.PublicKey)
			require.True(t, ok)
			assert.True(t, ecdsa.Verify(&k.PublicKey, digest[:], r, s))
			_, _, ok = ECDSAFromRaw(raw[1:], &k.PublicKey)
			assert.False(t, ok)
		})
	}
	k := ecKey(t)
	_, err := ECDSARawFromDER([]byte{0x30, 0x00, 0x01}, &k.PublicKey)
	assert.Error(t, err)
}
