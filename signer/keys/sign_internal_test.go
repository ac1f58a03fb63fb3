package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
)

func sp(s string) *string { return &s }

func TestParseSignInputNamesTheField(t *testing.T) {
	ok := base64.StdEncoding.EncodeToString([]byte("m"))
	cases := []struct {
		name   string
		in     SignInput
		verify bool
		field  string // "" when valid
	}{
		{"message", SignInput{Message: sp(ok)}, false, ""},
		{"url-safe unpadded digest", SignInput{Digest: sp(base64.RawURLEncoding.EncodeToString(make([]byte, 32)))}, false, ""},
		{"neither", SignInput{}, false, "message"},
		{"both", SignInput{Message: sp(ok), Digest: sp(ok)}, false, "digest"},
		{"bad message", SignInput{Message: sp("a b c!")}, false, "message"},
		{"bad digest", SignInput{Digest: sp("====")}, false, "digest"},
		{"bad algorithm", SignInput{Message: sp(ok), Algorithm: "none"}, false, "algorithm"},
		{"bad format", SignInput{Message: sp(ok), Format: "jws"}, false, "format"},
		{"no signature", SignInput{Message: sp(ok)}, true, "signature"},
		{"bad signature", SignInput{Message: sp(ok), Signature: sp("!!")}, true, "signature"},
		{"verify", SignInput{Message: sp(ok), Signature: sp(ok), Algorithm: "es256", Format: "RAW"}, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseSignInput(c.in, c.verify)
			if c.field == "" {
				require.NoError(t, err)
				return
			}
			e := signer.AsError(err)
			assert.Equal(t, signer.KindInvalid, e.Kind)
			require.NotEmpty(t, e.Fields)
			assert.Equal(t, c.field, e.Fields[0].Field)
		})
	}
}

// TestSigningAlgorithmsRoundTrip signs with software keys exactly as Sign
// does with HSM keys (same options, same input preparation) and checks the
// result with the standard library and with sigAlg.verify.
func TestSigningAlgorithmsRoundTrip(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	keys := map[string]crypto.Signer{"P256": p256, "P384": p384, "P521": p521, "RSA": rk, "Ed25519": ek}
	wantDefault := map[string]string{"P256": "ES256", "P384": "ES384", "P521": "ES512", "RSA": "RS256", "Ed25519": "EdDSA"}
	msg := []byte("the data")
	for name, key := range keys {
		def, ok := defaultSigAlg(key.Public())
		require.True(t, ok)
		assert.Equal(t, wantDefault[name], def.name)
		for _, alg := range signingAlgorithms {
			t.Run(name+"/"+alg.name, func(t *testing.T) {
				req := &signRequest{algorithm: alg.name, message: msg, format: SignatureDER}
				_, input, err := req.prepare(key.Public(), nil)
				if !alg.fits(key.Public()) {
					assert.Equal(t, "algorithm", signer.AsError(err).Fields[0].Field)
					return
				}
				require.NoError(t, err)
				if alg.family == famEdDSA {
					assert.Equal(t, msg, input)
				} else {
					h := alg.hash.New()
					h.Write(msg)
					assert.Equal(t, h.Sum(nil), input)
				}
				sig, err := key.Sign(rand.Reader, input, alg.opts())
				require.NoError(t, err)
				assert.True(t, alg.verify(key.Public(), input, sig, SignatureDER))
				assert.False(t, alg.verify(key.Public(), input[1:], sig, SignatureDER))
				if alg.family == famPSS {
					// The salt is the hash length (RFC 7518 §3.5).
					err := rsa.VerifyPSS(&rk.PublicKey, alg.hash, input, sig, &rsa.PSSOptions{SaltLength: alg.hash.Size()})
					assert.NoError(t, err)
				}
				if alg.family == famECDSA {
					pub := key.Public().(*ecdsa.PublicKey)
					raw, err := encoding.ECDSARawFromDER(sig, pub)
					require.NoError(t, err)
					assert.Len(t, raw, 2*((pub.Curve.Params().BitSize+7)/8))
					assert.True(t, alg.verify(pub, input, raw, SignatureRaw))
					assert.False(t, alg.verify(pub, input, raw[1:], SignatureRaw))
				}
			})
		}
	}
}

func TestDigestLengthChecked(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	d256, d384, d512 := sha256.Sum256(nil), sha512.Sum384(nil), sha512.Sum512(nil)
	for _, c := range []struct {
		key    crypto.Signer
		alg    string
		digest []byte
		ok     bool
	}{
		{p256, "ES256", d256[:], true},
		{p256, "ES256", d384[:], false},
		{rk, "RS384", d384[:], true},
		{rk, "PS512", d512[:], true},
		{rk, "PS512", d256[:], false},
		{rk, "", d256[:], true},
	} {
		req := &signRequest{algorithm: c.alg, digest: c.digest, isDigest: true}
		_, input, err := req.prepare(c.key.Public(), nil)
		if c.ok {
			require.NoError(t, err, c.alg)
			assert.Equal(t, c.digest, input)
		} else {
			require.Error(t, err)
			assert.Equal(t, "digest", signer.AsError(err).Fields[0].Field)
		}
	}
}

// A token without RSA-PSS: PS* is refused on the algorithm field naming
// the mechanism, and left out of what the key is said to sign with.
func TestPSSRefusedWithoutTheMechanism(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	noPSS := &hsm.UnsupportedError{Feature: hsm.FeaturePSS, Reason: "no CKM_RSA_PKCS_PSS"}
	req := &signRequest{algorithm: "PS256", message: []byte("m"), format: SignatureDER}
	_, _, err := req.prepare(rk.Public(), noPSS)
	e := signer.AsError(err)
	assert.Equal(t, signer.KindInvalid, e.Kind)
	require.Len(t, e.Fields, 1)
	assert.Equal(t, "algorithm", e.Fields[0].Field)
	assert.Equal(t, "algorithm: the HSM token does not support RSA-PSS (no CKM_RSA_PKCS_PSS); this key signs with RS256, RS384, RS512", e.Msg)
	assert.ErrorIs(t, err, hsm.ErrUnsupported)

	req = &signRequest{algorithm: "RS256", message: []byte("m"), format: SignatureDER}
	_, _, err = req.prepare(rk.Public(), noPSS)
	assert.NoError(t, err, "PKCS#1 v1.5 needs no PSS")
	assert.Equal(t, []string{"RS256", "RS384", "RS512"}, algorithmsFor(rk.Public(), noPSS))
	assert.Equal(t, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, algorithmsFor(rk.Public(), nil))

	req = &signRequest{algorithm: "ES256", message: []byte("m"), format: SignatureDER}
	_, _, err = req.prepare(rk.Public(), noPSS)
	assert.ErrorContains(t, err, "does not fit the key; it signs with RS256, RS384, RS512")
}
