package hsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// capsOf builds capabilities from a list of mechanisms, as a token
// without EC, PSS or AES-GCM (opencryptoki's soft token) would report.
func capsOf(ms ...Mechanism) *Capabilities {
	c := &Capabilities{byCode: map[uint]Mechanism{}}
	for _, m := range ms {
		m.Name = MechanismName(m.Code)
		c.byCode[m.Code] = m
		c.Mechanisms = append(c.Mechanisms, m)
	}
	return c
}

func TestCapabilitiesNameWhatIsMissing(t *testing.T) {
	c := capsOf(
		Mechanism{Code: pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, MinKeySize: 512, MaxKeySize: 4096, Flags: pkcs11.CKF_GENERATE_KEY_PAIR},
		Mechanism{Code: pkcs11.CKM_RSA_PKCS, MinKeySize: 512, MaxKeySize: 4096, Flags: pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY},
		Mechanism{Code: pkcs11.CKM_AES_KEY_GEN, Flags: pkcs11.CKF_GENERATE},
	)
	assert.Equal(t, []Algorithm{RSA2048, RSA3072, RSA4096}, c.Algorithms())

	err := c.Algorithm(EC256)
	require.ErrorIs(t, err, ErrUnsupported)
	assert.Equal(t, "the HSM token does not support EC256 (no CKM_EC_KEY_PAIR_GEN)", err.Error())
	assert.ErrorContains(t, c.Algorithm(ED25519), "no CKM_EC_EDWARDS_KEY_PAIR_GEN")
	assert.ErrorContains(t, c.Feature(FeaturePSS), "RSA-PSS (no CKM_RSA_PKCS_PSS)")
	assert.ErrorContains(t, c.Feature(FeatureWrap), "secret wrapping (no CKM_AES_GCM, and no CKM_AES_ECB for AES-CTR with HMAC-SHA256)")

	small := capsOf(
		Mechanism{Code: pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, MinKeySize: 1024, MaxKeySize: 2048, Flags: pkcs11.CKF_GENERATE_KEY_PAIR},
		Mechanism{Code: pkcs11.CKM_RSA_PKCS, MinKeySize: 1024, MaxKeySize: 2048, Flags: pkcs11.CKF_SIGN},
	)
	assert.ErrorContains(t, small.Algorithm(RSA4096), "CKM_RSA_PKCS_KEY_PAIR_GEN takes 1024-2048-bit keys")
	assert.Equal(t, []Algorithm{RSA2048}, small.Algorithms())

	verifyOnly := capsOf(Mechanism{Code: pkcs11.CKM_EC_KEY_PAIR_GEN, Flags: pkcs11.CKF_GENERATE_KEY_PAIR},
		Mechanism{Code: pkcs11.CKM_ECDSA, Flags: pkcs11.CKF_VERIFY})
	assert.ErrorContains(t, verifyOnly.Algorithm(EC384), "CKM_ECDSA cannot sign")

	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	assert.ErrorIs(t, c.Key(k.Public()), ErrUnsupported)

	var nilCaps *Capabilities
	assert.ErrorIs(t, nilCaps.Algorithm(EC256), ErrUnsupported)
}

func TestSoftHSMCapabilities(t *testing.T) {
	_, h := openToken(t)
	c := h.Capabilities()
	require.NotNil(t, c)
	assert.Equal(t, algorithms, c.Algorithms(), "SoftHSM2 offers every algorithm")
	assert.NoError(t, h.SupportsFeature(FeaturePSS))
	assert.NoError(t, h.SupportsFeature(FeatureWrap))
	m, ok := c.Mechanism(pkcs11.CKM_ECDSA)
	require.True(t, ok)
	assert.Contains(t, m.Uses(), "sign")
	assert.Equal(t, "CKM_ECDSA", m.Name)
	_, err := h.Generate(context.Background(), "x", "x", Algorithm("EC192"))
	assert.Error(t, err)
	assert.False(t, errors.Is(err, ErrUnsupported), "an unknown name is a caller error, not a token limit")
}
