package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTPM2(t *testing.T) (TokenSpec, *pkcs11.Ctx, uint, pkcs11.SessionHandle) {
	t.Helper()
	start := time.Now()
	tok := NewTokenSpec(t, TokenTPM2)
	t.Logf("tpm2 token %s set up in %v", tok.Label, time.Since(start).Round(time.Millisecond))
	tok.Setenv(t)
	ctx, slot := openToken(t, tok)
	return tok, ctx, slot, login(t, ctx, slot, tok.PIN)
}

func tpm2Attr(t uint, v any) *pkcs11.Attribute { return pkcs11.NewAttribute(t, v) }

// tpm2KeyPair generates a token key pair with the given public template
// additions, timing it.
func tpm2KeyPair(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle, mech uint, id string, pub ...*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, time.Duration, error) {
	start := time.Now()
	pubT := append([]*pkcs11.Attribute{tpm2Attr(pkcs11.CKA_TOKEN, true), tpm2Attr(pkcs11.CKA_VERIFY, true),
		tpm2Attr(pkcs11.CKA_ID, []byte(id))}, pub...)
	privT := []*pkcs11.Attribute{tpm2Attr(pkcs11.CKA_TOKEN, true), tpm2Attr(pkcs11.CKA_PRIVATE, true),
		tpm2Attr(pkcs11.CKA_SENSITIVE, true), tpm2Attr(pkcs11.CKA_EXTRACTABLE, false), tpm2Attr(pkcs11.CKA_SIGN, true),
		tpm2Attr(pkcs11.CKA_ID, []byte(id))}
	pubH, privH, err := ctx.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pubT, privT)
	return pubH, privH, time.Since(start), err
}

func tpm2Sign(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle, key pkcs11.ObjectHandle, m *pkcs11.Mechanism, data []byte) ([]byte, time.Duration, error) {
	start := time.Now()
	if err := ctx.SignInit(sh, []*pkcs11.Mechanism{m}, key); err != nil {
		return nil, time.Since(start), err
	}
	sig, err := ctx.Sign(sh, data)
	return sig, time.Since(start), err
}

func ecParams(t *testing.T, oid asn1.ObjectIdentifier) []byte {
	t.Helper()
	b, err := asn1.Marshal(oid)
	require.NoError(t, err)
	return b
}

// TestTPM2Facts records what tpm2-pkcs11 1.9 on swtpm 0.7 offers and where
// it differs from the other rows (see /work/notes/tokens.md).
func TestTPM2Facts(t *testing.T) {
	_, ctx, slot, sh := newTPM2(t)

	ti, err := ctx.GetTokenInfo(slot)
	require.NoError(t, err)
	t.Logf("model %q manufacturer %q", ti.Model, ti.ManufacturerID)
	assert.Equal(t, uint(1024), ti.MaxSessionCount)
	assert.Equal(t, uint(1024), ti.MaxRwSessionCount)
	assert.Equal(t, uint(0), ti.MinPinLen)
	assert.Equal(t, uint(128), ti.MaxPinLen)

	mechs, err := ctx.GetMechanismList(slot)
	require.NoError(t, err)
	have := map[uint]pkcs11.MechanismInfo{}
	for _, m := range mechs {
		mi, err := ctx.GetMechanismInfo(slot, []*pkcs11.Mechanism{m})
		require.NoError(t, err)
		have[m.Mechanism] = mi
	}
	for _, m := range []uint{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKM_RSA_PKCS, pkcs11.CKM_SHA256_RSA_PKCS,
		pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKM_ECDSA, pkcs11.CKM_AES_KEY_GEN,
		pkcs11.CKM_AES_ECB, pkcs11.CKM_AES_CTR, pkcs11.CKM_SHA256_HMAC} {
		assert.Contains(t, have, m, MechanismName(m))
	}
	// Not listed: PSS (the library lists it only for a token whose store
	// says PSS signatures were checked, which tpm2_ptool addtoken does and
	// C_InitToken does not), AES-GCM, AES key wrap, generic secrets, EdDSA.
	for _, m := range []uint{pkcs11.CKM_RSA_PKCS_PSS, pkcs11.CKM_SHA256_RSA_PKCS_PSS, pkcs11.CKM_AES_GCM,
		pkcs11.CKM_AES_KEY_WRAP, pkcs11.CKM_GENERIC_SECRET_KEY_GEN, ckmEdDSA, ckmECEdwardsKeyPairGen} {
		assert.NotContains(t, have, m, MechanismName(m))
	}
	assert.Equal(t, uint(1024), have[pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN].MinKeySize)
	assert.Equal(t, uint(3072), have[pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN].MaxKeySize)
	// A range that takes P-521 in, though P-521 keys do not work (below).
	t.Logf("EC key sizes %d-%d", have[pkcs11.CKM_EC_KEY_PAIR_GEN].MinKeySize, have[pkcs11.CKM_EC_KEY_PAIR_GEN].MaxKeySize)
	for _, m := range []uint{pkcs11.CKM_RSA_PKCS, pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.CKM_AES_ECB, pkcs11.CKM_AES_CBC} {
		assert.Zero(t, have[m].Flags&(pkcs11.CKF_WRAP|pkcs11.CKF_UNWRAP), "%s wraps", MechanismName(m))
	}

	// Session objects are refused: keys are token objects.
	_, _, _, err = tpm2KeyPair(ctx, sh, pkcs11.CKM_EC_KEY_PAIR_GEN, "session",
		tpm2Attr(pkcs11.CKA_EC_PARAMS, ecParams(t, asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7})),
		tpm2Attr(pkcs11.CKA_TOKEN, false))
	assert.Equal(t, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_VALUE_INVALID), rv(err), "CKA_TOKEN false")

	// An RSA key is a TPM key that signs and decrypts: a template saying
	// CKA_ENCRYPT false (public) or CKA_DECRYPT false (private) does not
	// match it and fails (CKR_GENERAL_ERROR, "attr mismatch" on stderr).
	rsaBits := []*pkcs11.Attribute{tpm2Attr(pkcs11.CKA_MODULUS_BITS, 2048), tpm2Attr(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1})}
	_, _, _, err = tpm2KeyPair(ctx, sh, pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, "noenc", append(rsaBits, tpm2Attr(pkcs11.CKA_ENCRYPT, false))...)
	assert.Equal(t, pkcs11.Error(pkcs11.CKR_GENERAL_ERROR), rv(err), "RSA with CKA_ENCRYPT false")
	_, _, err = ctx.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)},
		append([]*pkcs11.Attribute{tpm2Attr(pkcs11.CKA_TOKEN, true), tpm2Attr(pkcs11.CKA_VERIFY, true)}, rsaBits...),
		[]*pkcs11.Attribute{tpm2Attr(pkcs11.CKA_TOKEN, true), tpm2Attr(pkcs11.CKA_PRIVATE, true), tpm2Attr(pkcs11.CKA_SIGN, true),
			tpm2Attr(pkcs11.CKA_DECRYPT, false)})
	assert.Equal(t, pkcs11.Error(pkcs11.CKR_GENERAL_ERROR), rv(err), "RSA with CKA_DECRYPT false")

	digest := sha256.Sum256([]byte("hsmca tpm2"))
	// RSA: 2048 and 3072; 4096 is refused.
	for _, bits := range []int{2048, 3072, 4096} {
		pub, priv, took, err := tpm2KeyPair(ctx, sh, pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, fmt.Sprintf("rsa%d", bits),
			tpm2Attr(pkcs11.CKA_MODULUS_BITS, bits), tpm2Attr(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
		if bits == 4096 {
			assert.Equal(t, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_VALUE_INVALID), rv(err), "RSA 4096")
			continue
		}
		require.NoError(t, err, "RSA %d", bits)
		attrs, err := ctx.GetAttributeValue(sh, pub, []*pkcs11.Attribute{tpm2Attr(pkcs11.CKA_MODULUS, nil), tpm2Attr(pkcs11.CKA_PUBLIC_EXPONENT, nil)})
		require.NoError(t, err)
		key := &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(new(big.Int).SetBytes(attrs[1].Value).Int64())}
		require.Equal(t, bits, key.N.BitLen())
		sig, signed, err := tpm2Sign(ctx, sh, priv, pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil), []byte("hsmca tpm2"))
		require.NoError(t, err)
		require.NoError(t, rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig))
		t.Logf("RSA %d: keygen %v, sign %v", bits, took.Round(time.Millisecond), signed.Round(time.Millisecond))
		if bits != 2048 {
			continue
		}
		// PSS with hashing signs although it is not listed; PSS over a
		// digest (CKM_RSA_PKCS_PSS) does not.
		pss := pkcs11.NewPSSParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, 32)
		sig, _, err = tpm2Sign(ctx, sh, priv, pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS_PSS, pss), []byte("hsmca tpm2"))
		require.NoError(t, err, "CKM_SHA256_RSA_PKCS_PSS")
		require.NoError(t, rsa.VerifyPSS(key, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: 32}))
		_, _, err = tpm2Sign(ctx, sh, priv, pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pss), digest[:])
		assert.Equal(t, pkcs11.Error(pkcs11.CKR_MECHANISM_INVALID), rv(err), "CKM_RSA_PKCS_PSS")
	}

	// EC: P-256 and P-384 work. P-521 keys are generated, but their
	// CKA_EC_POINT is not valid DER (a short-form length of 133) and
	// signing fails (CKR_HOST_MEMORY, the library failing to parse it).
	for _, c := range []struct {
		curve elliptic.Curve
		oid   asn1.ObjectIdentifier
	}{
		{elliptic.P256(), asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}},
		{elliptic.P384(), asn1.ObjectIdentifier{1, 3, 132, 0, 34}},
		{elliptic.P521(), asn1.ObjectIdentifier{1, 3, 132, 0, 35}},
	} {
		name := c.curve.Params().Name
		pub, priv, took, err := tpm2KeyPair(ctx, sh, pkcs11.CKM_EC_KEY_PAIR_GEN, name, tpm2Attr(pkcs11.CKA_EC_PARAMS, ecParams(t, c.oid)))
		require.NoError(t, err, name)
		attrs, err := ctx.GetAttributeValue(sh, pub, []*pkcs11.Attribute{tpm2Attr(pkcs11.CKA_EC_POINT, nil)})
		require.NoError(t, err)
		var point []byte
		_, perr := asn1.Unmarshal(attrs[0].Value, &point)
		sig, signed, serr := tpm2Sign(ctx, sh, priv, pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), digest[:])
		if c.curve == elliptic.P521() {
			assert.Error(t, perr, "P-521 CKA_EC_POINT % x...", attrs[0].Value[:4])
			assert.Error(t, serr, "P-521 signature")
			t.Logf("%s: keygen %v; CKA_EC_POINT: %v; C_Sign: %v", name, took.Round(time.Millisecond), perr, serr)
			continue
		}
		require.NoError(t, perr)
		require.NoError(t, serr, name)
		x, y := elliptic.Unmarshal(c.curve, point) //nolint:staticcheck // a raw point from the token
		require.NotNil(t, x)
		n := len(sig) / 2
		require.True(t, ecdsa.Verify(&ecdsa.PublicKey{Curve: c.curve, X: x, Y: y}, digest[:],
			new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])), name)
		t.Logf("%s: keygen %v, sign %v", name, took.Round(time.Millisecond), signed.Round(time.Millisecond))
	}

	// No secret keys from C_GenerateKey, whatever the mechanism list says.
	_, err = ctx.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		tpm2Attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), tpm2Attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		tpm2Attr(pkcs11.CKA_VALUE_LEN, 32), tpm2Attr(pkcs11.CKA_TOKEN, true), tpm2Attr(pkcs11.CKA_ENCRYPT, true)})
	assert.Equal(t, pkcs11.Error(pkcs11.CKR_FUNCTION_NOT_SUPPORTED), rv(err), "C_GenerateKey AES")

	// No import of private or secret keys: C_CreateObject makes RSA public
	// keys and data objects only.
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rk.Precompute()
	_, err = ctx.CreateObject(sh, []*pkcs11.Attribute{
		tpm2Attr(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), tpm2Attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		tpm2Attr(pkcs11.CKA_TOKEN, true), tpm2Attr(pkcs11.CKA_PRIVATE, true), tpm2Attr(pkcs11.CKA_SENSITIVE, true),
		tpm2Attr(pkcs11.CKA_SIGN, true), tpm2Attr(pkcs11.CKA_MODULUS, rk.N.Bytes()),
		tpm2Attr(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(rk.E)).Bytes()), tpm2Attr(pkcs11.CKA_PRIVATE_EXPONENT, rk.D.Bytes()),
		tpm2Attr(pkcs11.CKA_PRIME_1, rk.Primes[0].Bytes()), tpm2Attr(pkcs11.CKA_PRIME_2, rk.Primes[1].Bytes()),
		tpm2Attr(pkcs11.CKA_EXPONENT_1, rk.Precomputed.Dp.Bytes()), tpm2Attr(pkcs11.CKA_EXPONENT_2, rk.Precomputed.Dq.Bytes()),
		tpm2Attr(pkcs11.CKA_COEFFICIENT, rk.Precomputed.Qinv.Bytes())})
	assert.Equal(t, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_VALUE_INVALID), rv(err), "import an RSA private key")
	_, err = ctx.CreateObject(sh, []*pkcs11.Attribute{
		tpm2Attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), tpm2Attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		tpm2Attr(pkcs11.CKA_TOKEN, true), tpm2Attr(pkcs11.CKA_SIGN, true), tpm2Attr(pkcs11.CKA_VALUE, make([]byte, 32))})
	assert.Equal(t, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_VALUE_INVALID), rv(err), "import a secret key")

	// Objects are found by CKA_ID and destroyed (public and private half).
	require.NoError(t, ctx.FindObjectsInit(sh, []*pkcs11.Attribute{tpm2Attr(pkcs11.CKA_ID, []byte("rsa2048"))}))
	found, _, err := ctx.FindObjects(sh, 10)
	require.NoError(t, err)
	require.NoError(t, ctx.FindObjectsFinal(sh))
	require.Len(t, found, 2)
	for _, o := range found {
		require.NoError(t, ctx.DestroyObject(sh, o))
	}

	// The session limit is real: 1024 sessions per token, then
	// CKR_SESSION_COUNT.
	var opened []pkcs11.SessionHandle
	for len(opened) < 2000 {
		s, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			assert.Equal(t, pkcs11.Error(pkcs11.CKR_SESSION_COUNT), rv(err))
			break
		}
		opened = append(opened, s)
	}
	assert.Len(t, opened, 1023, "sessions besides the logged-in one")
	for _, s := range opened {
		require.NoError(t, ctx.CloseSession(s))
	}
	_, err = ctx.GenerateRandom(sh, 16)
	require.NoError(t, err)
	require.NoError(t, ctx.Logout(sh))
}

// TestTPM2PINLockout shows the TPM's dictionary-attack protection behind
// the PIN: three wrong PINs (here from another process's worth of library
// state: a second copy of the module) and the token answers
// CKR_PIN_LOCKED, to the right PIN too (swtpm: 3 tries, then 1000 s per try
// to recover), and sessions logged in before stop working. An application
// must not retry a login that failed with CKR_PIN_INCORRECT.
func TestTPM2PINLockout(t *testing.T) {
	tok, ctx, slot, sh := newTPM2(t)
	_, key, _, err := tpm2KeyPair(ctx, sh, pkcs11.CKM_EC_KEY_PAIR_GEN, "before",
		tpm2Attr(pkcs11.CKA_EC_PARAMS, ecParams(t, asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7})))
	require.NoError(t, err)
	digest := sha256.Sum256([]byte("hsmca tpm2"))
	_, _, err = tpm2Sign(ctx, sh, key, pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), digest[:])
	require.NoError(t, err)

	lib, err := os.ReadFile(tok.Module)
	require.NoError(t, err)
	other := tok
	other.Module = filepath.Join(t.TempDir(), "libtpm2_pkcs11.so")
	require.NoError(t, os.WriteFile(other.Module, lib, 0o700))
	ctx2, slot2 := openToken(t, other)
	require.Equal(t, slot, slot2)
	sh2, err := ctx2.OpenSession(slot2, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		assert.Equal(t, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT), rv(ctx2.Login(sh2, pkcs11.CKU_USER, "00000000")), "wrong PIN %d", i+1)
	}
	assert.Equal(t, pkcs11.Error(pkcs11.CKR_PIN_LOCKED), rv(ctx2.Login(sh2, pkcs11.CKU_USER, "00000000")))
	assert.Equal(t, pkcs11.Error(pkcs11.CKR_PIN_LOCKED), rv(ctx2.Login(sh2, pkcs11.CKU_USER, tok.PIN)), "the right PIN, locked out")
	ti, err := ctx2.GetTokenInfo(slot2)
	require.NoError(t, err)
	t.Logf("token flags once locked: 0x%x", ti.Flags)

	// The lockout is the TPM's: a session logged in before it can neither
	// sign nor generate keys now (the keys' authorisations are
	// DA-protected).
	_, _, err = tpm2Sign(ctx, sh, key, pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), digest[:])
	assert.Equal(t, pkcs11.Error(pkcs11.CKR_GENERAL_ERROR), rv(err), "signing with a logged-in session during the lockout")
	_, _, _, err = tpm2KeyPair(ctx, sh, pkcs11.CKM_EC_KEY_PAIR_GEN, "after",
		tpm2Attr(pkcs11.CKA_EC_PARAMS, ecParams(t, asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7})))
	assert.Equal(t, pkcs11.Error(pkcs11.CKR_GENERAL_ERROR), rv(err), "key generation during the lockout")
}

// TestTPM2TokensInOneProcess loads two tokens in this process at once
// (each its own copy of the library, initialised under its own
// variables), with SoftHSM2 alongside, and reloads them: no shared state,
// no crash on unload.
func TestTPM2TokensInOneProcess(t *testing.T) {
	sw := NewTokenSpec(t, TokenSoftHSM2)
	swCtx, swSlot := openToken(t, sw)
	login(t, swCtx, swSlot, sw.PIN)

	a := NewTokenSpec(t, TokenTPM2)
	b := NewTokenSpec(t, TokenTPM2)
	require.NotEqual(t, a.Module, b.Module)
	for round := 0; round < 3; round++ {
		a.Setenv(t)
		ca, sa := openToken(t, a)
		sha := login(t, ca, sa, a.PIN)
		b.Setenv(t)
		cb, sb := openToken(t, b)
		shb := login(t, cb, sb, b.PIN)
		id := fmt.Sprintf("k%d", round)
		_, _, _, err := tpm2KeyPair(ca, sha, pkcs11.CKM_EC_KEY_PAIR_GEN, id,
			tpm2Attr(pkcs11.CKA_EC_PARAMS, ecParams(t, asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7})))
		require.NoError(t, err)
		for _, c := range []struct {
			ctx  *pkcs11.Ctx
			sh   pkcs11.SessionHandle
			want int
		}{{ca, sha, 2}, {cb, shb, 0}} {
			require.NoError(t, c.ctx.FindObjectsInit(c.sh, []*pkcs11.Attribute{tpm2Attr(pkcs11.CKA_ID, []byte(id))}))
			found, _, err := c.ctx.FindObjects(c.sh, 10)
			require.NoError(t, err)
			require.NoError(t, c.ctx.FindObjectsFinal(c.sh))
			require.Len(t, found, c.want)
		}
		for _, c := range []*pkcs11.Ctx{ca, cb} {
			require.NoError(t, c.Finalize())
			c.Destroy()
		}
	}
	_, err := swCtx.GenerateRandom(login(t, swCtx, swSlot, sw.PIN), 8)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(a.Label, "tpm2-"))
	assert.FileExists(t, a.PINFile)
}
