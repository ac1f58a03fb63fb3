package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

// calls records Observer callbacks.
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) observe(fn string, _ time.Duration, _ error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[fn]++
}

func (c *calls) count(fn string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[fn]
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func config(t *testing.T, tok *testenv.Token) Config {
	return Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN,
		Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))}
}

func openConfig(t *testing.T, cfg Config) *HSM {
	t.Helper()
	h, err := Open(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, h.Close()) })
	return h
}

// openToken makes a fresh token and opens it. Tokens must be made before
// any HSM of the test binary is open: SoftHSM2 reads its token directory
// when the library is initialised.
func openToken(t *testing.T) (*testenv.Token, *HSM) {
	t.Helper()
	tok := testenv.NewToken(t)
	return tok, openConfig(t, config(t, tok))
}

// signAndVerify signs a fixed message with s and checks the signature with
// s.Public() for every signature scheme the key type offers.
func signAndVerify(t *testing.T, s crypto.Signer) {
	t.Helper()
	msg := []byte("hsmca test message")
	switch pub := s.Public().(type) {
	case *ecdsa.PublicKey:
		var digest []byte
		var hash crypto.Hash
		switch pub.Curve {
		case elliptic.P256():
			d := sha256.Sum256(msg)
			digest, hash = d[:], crypto.SHA256
		case elliptic.P384():
			d := sha512.Sum384(msg)
			digest, hash = d[:], crypto.SHA384
		default:
			d := sha512.Sum512(msg)
			digest, hash = d[:], crypto.SHA512
		}
		sig, err := s.Sign(rand.Reader, digest, hash)
		require.NoError(t, err)
		assert.True(t, ecdsa.VerifyASN1(pub, digest, sig), "ECDSA signature does not verify")
	case *rsa.PublicKey:
		d := sha256.Sum256(msg)
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		require.NoError(t, err)
		assert.NoError(t, rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig))
		pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		if k, ok := s.(*keySigner); ok && k.h.SupportsFeature(FeaturePSS) != nil {
			_, err = s.Sign(rand.Reader, d[:], pss)
			assert.ErrorIs(t, err, ErrUnsupported, "PSS on a token without CKM_RSA_PKCS_PSS")
			return
		}
		sig, err = s.Sign(rand.Reader, d[:], pss)
		require.NoError(t, err)
		assert.NoError(t, rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, pss))
		// Auto is signed as EqualsHash, which an Auto verifier accepts.
		sig, err = s.Sign(rand.Reader, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA256})
		require.NoError(t, err)
		assert.NoError(t, rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}))
	case ed25519.PublicKey:
		sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
		require.NoError(t, err)
		assert.True(t, ed25519.Verify(pub, msg, sig), "Ed25519 signature does not verify")
		_, err = s.Sign(rand.Reader, msg, crypto.SHA512)
		assert.Error(t, err, "Ed25519ph must be refused")
	default:
		t.Fatalf("unexpected public key type %T", pub)
	}
}

func wantAlgorithm(t *testing.T, alg Algorithm, pub crypto.PublicKey) {
	t.Helper()
	switch alg {
	case EC256, EC384, EC521:
		k, ok := pub.(*ecdsa.PublicKey)
		require.True(t, ok, "%s: public key is %T", alg, pub)
		assert.Equal(t, alg.curve(), k.Curve)
	case RSA2048, RSA3072, RSA4096:
		k, ok := pub.(*rsa.PublicKey)
		require.True(t, ok, "%s: public key is %T", alg, pub)
		assert.Equal(t, alg.rsaBits(), k.N.BitLen())
	case ED25519:
		k, ok := pub.(ed25519.PublicKey)
		require.True(t, ok, "%s: public key is %T", alg, pub)
		assert.Len(t, k, ed25519.PublicKeySize)
	}
}

// TestGenerateEveryAlgorithm generates one key of each algorithm (RSA-4096
// only here: it is slow), then checks attributes, signatures, the cache,
// List, and resolution by a second handle that never saw the keys.
func TestGenerateEveryAlgorithm(t *testing.T) {
	tok, h := openToken(t)
	ctx := context.Background()
	pubs := map[string]crypto.PublicKey{}
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			id := "gen-" + string(alg)
			s, err := h.Generate(ctx, id, "hsmca/test/"+id, alg)
			require.NoError(t, err)
			wantAlgorithm(t, alg, s.Public())
			pubs[id] = s.Public()

			sensitive, extractable, err := h.KeyAttributes(ctx, id)
			require.NoError(t, err)
			assert.True(t, sensitive, "CKA_SENSITIVE")
			assert.False(t, extractable, "CKA_EXTRACTABLE")

			signAndVerify(t, s)

			again, err := h.Signer(ctx, id)
			require.NoError(t, err)
			assert.Same(t, s, again, "Signer must return the cached signer")
		})
	}

	keys, err := h.List(ctx)
	require.NoError(t, err)
	require.Len(t, keys, len(algorithms))
	for _, k := range keys {
		alg := Algorithm(strings.TrimPrefix(k.ID, "gen-"))
		assert.Equal(t, alg, k.Algorithm, k.ID)
		assert.Equal(t, "hsmca/test/"+k.ID, k.Label)
		assert.True(t, k.Public.(interface{ Equal(crypto.PublicKey) bool }).Equal(pubs[k.ID]), "%s: listed public key differs", k.ID)
	}

	// A handle that never generated the keys finds each by CKA_ID.
	require.NoError(t, h.Close())
	h2 := openConfig(t, config(t, tok))
	for _, alg := range algorithms {
		s, err := h2.Signer(ctx, "gen-"+string(alg))
		require.NoError(t, err, alg)
		assert.True(t, s.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pubs["gen-"+string(alg)]), alg)
		signAndVerify(t, s)
	}
}

func TestEd25519Messages(t *testing.T) {
	_, h := openToken(t)
	s, err := h.Generate(context.Background(), "ed", "hsmca/test/ed", ED25519)
	require.NoError(t, err)
	pub := s.Public().(ed25519.PublicKey)
	for _, msg := range [][]byte{{}, []byte("x"), make([]byte, 64<<10)} {
		sig, err := s.Sign(nil, msg, &ed25519.Options{})
		require.NoError(t, err)
		assert.True(t, ed25519.Verify(pub, msg, sig))
	}
	_, err = s.Sign(nil, []byte("x"), &ed25519.Options{Context: "ctx"})
	assert.Error(t, err, "Ed25519ctx must be refused")
}

func TestImport(t *testing.T) {
	_, h := openToken(t)
	ctx := context.Background()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	require.NoError(t, err)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)

	for _, tc := range []struct {
		id  string
		key crypto.Signer
		alg Algorithm
	}{
		{"imp-rsa", rsaKey, RSA2048},
		{"imp-p256", p256, EC256},
		{"imp-p384", p384, EC384},
		{"imp-p521", p521, EC521},
		{"imp-ed", edKey, ED25519},
	} {
		t.Run(tc.id, func(t *testing.T) {
			s, err := h.Import(ctx, tc.id, "hsmca/test/"+tc.id, tc.key)
			require.NoError(t, err)
			assert.True(t, s.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.key.Public()), "public key differs")

			sensitive, extractable, err := h.KeyAttributes(ctx, tc.id)
			require.NoError(t, err)
			assert.True(t, sensitive, "CKA_SENSITIVE")
			assert.False(t, extractable, "CKA_EXTRACTABLE")

			signAndVerify(t, s)

			_, err = h.Import(ctx, tc.id, "hsmca/test/again", tc.key)
			assert.ErrorIs(t, err, ErrKeyExists)
		})
	}

	keys, err := h.List(ctx)
	require.NoError(t, err)
	got := map[string]Algorithm{}
	for _, k := range keys {
		got[k.ID] = k.Algorithm
	}
	assert.Equal(t, map[string]Algorithm{"imp-rsa": RSA2048, "imp-p256": EC256, "imp-p384": EC384, "imp-p521": EC521, "imp-ed": ED25519}, got)

	_, err = h.Import(ctx, "imp-bad", "hsmca/test/bad", struct{}{})
	assert.ErrorContains(t, err, "unsupported key type")
	ok, err := h.Exists(ctx, "imp-bad")
	require.NoError(t, err)
	assert.False(t, ok)
}

// hideMechanisms makes h see its token without some mechanisms, as a
// token behind p11-kit (no CKM_AES_GCM, no CKM_EDDSA) would show it.
func hideMechanisms(h *HSM, codes ...uint) {
	old := h.caps.Load()
	c := &Capabilities{byCode: map[uint]Mechanism{}}
	for _, m := range old.Mechanisms {
		if !slices.Contains(codes, m.Code) {
			c.byCode[m.Code] = m
			c.Mechanisms = append(c.Mechanisms, m)
		}
	}
	h.caps.Store(c)
}

func TestWrapUnwrap(t *testing.T) {
	t.Run("AES-GCM", func(t *testing.T) { testWrapUnwrap(t, false) })
	t.Run("AES-CTR+HMAC", func(t *testing.T) { testWrapUnwrap(t, true) })
}

func testWrapUnwrap(t *testing.T, noGCM bool) {
	_, h := openToken(t)
	ctx := context.Background()
	var gcmBlob []byte
	if noGCM {
		require.NoError(t, h.EnsureWrappingKey(ctx, "wrap", "hsmca/test/wrap"))
		var err error
		gcmBlob, err = h.Wrap(ctx, "wrap", []byte("old"), nil)
		require.NoError(t, err)
		hideMechanisms(h, pkcs11.CKM_AES_GCM)
	}
	require.NoError(t, h.EnsureWrappingKey(ctx, "wrap", "hsmca/test/wrap"))
	require.NoError(t, h.EnsureWrappingKey(ctx, "wrap", "hsmca/test/wrap"), "second call finds the key")
	sensitive, extractable, err := h.KeyAttributes(ctx, "wrap")
	require.NoError(t, err)
	assert.True(t, sensitive)
	assert.False(t, extractable)

	secret := []byte("-----BEGIN PRIVATE KEY----- not really")
	aad := []byte("tenant-a/cert-1")
	blob, err := h.Wrap(ctx, "wrap", secret, aad)
	require.NoError(t, err)
	assert.NotContains(t, string(blob), string(secret))
	blob2, err := h.Wrap(ctx, "wrap", secret, aad)
	require.NoError(t, err)
	assert.NotEqual(t, blob, blob2, "nonces must differ")

	got, err := h.Unwrap(ctx, "wrap", blob, aad)
	require.NoError(t, err)
	assert.Equal(t, secret, got)

	empty, err := h.Wrap(ctx, "wrap", nil, nil)
	require.NoError(t, err)
	got, err = h.Unwrap(ctx, "wrap", empty, nil)
	require.NoError(t, err)
	assert.Empty(t, got)

	for i := range blob {
		bad := append([]byte(nil), blob...)
		bad[i] ^= 0x01
		_, err := h.Unwrap(ctx, "wrap", bad, aad)
		assert.Error(t, err, "flipped byte %d accepted", i)
	}
	_, err = h.Unwrap(ctx, "wrap", blob, []byte("tenant-b/cert-1"))
	assert.Error(t, err, "wrong AAD accepted")
	_, err = h.Unwrap(ctx, "wrap", blob, nil)
	assert.Error(t, err, "missing AAD accepted")
	_, err = h.Unwrap(ctx, "wrap", blob[:len(blob)-1], aad)
	assert.Error(t, err, "truncated blob accepted")
	_, err = h.Unwrap(ctx, "wrap", blob[:10], aad)
	assert.Error(t, err)

	_, err = h.Wrap(ctx, "no-such-key", secret, aad)
	assert.ErrorIs(t, err, ErrKeyNotFound)

	// A key pair's id cannot become a wrapping key.
	_, err = h.Generate(ctx, "pair", "hsmca/test/pair", EC256)
	require.NoError(t, err)
	assert.ErrorIs(t, h.EnsureWrappingKey(ctx, "pair", "hsmca/test/pair"), ErrKeyExists)

	if noGCM {
		assert.Equal(t, byte(wrapVersionCTR), blob[0])
		assert.Len(t, blob, 1+ctrIVSize+len(secret)+macSize)
		_, err = h.Unwrap(ctx, "wrap", gcmBlob, nil)
		assert.ErrorIs(t, err, ErrUnsupported, "an AES-GCM blob on a token without AES-GCM")
		mac, err := h.Exists(ctx, "wrap"+macSuffix)
		require.NoError(t, err)
		assert.True(t, mac, "the HMAC key sits beside the AES key")
		sensitive, extractable, err := h.KeyAttributes(ctx, "wrap"+macSuffix)
		require.NoError(t, err)
		assert.True(t, sensitive)
		assert.False(t, extractable)
		require.NoError(t, h.Delete(ctx, "wrap"))
		mac, err = h.Exists(ctx, "wrap"+macSuffix)
		require.NoError(t, err)
		assert.False(t, mac, "deleting a wrapping key deletes its HMAC key")
	} else {
		assert.Equal(t, byte(wrapVersion), blob[0])
	}
}

func TestDeleteAndExists(t *testing.T) {
	_, h := openToken(t)
	ctx := context.Background()
	for _, alg := range []Algorithm{EC256, ED25519} {
		id := "del-" + string(alg)
		s, err := h.Generate(ctx, id, "hsmca/test/"+id, alg)
		require.NoError(t, err)
		ok, err := h.Exists(ctx, id)
		require.NoError(t, err)
		assert.True(t, ok)

		require.NoError(t, h.Delete(ctx, id))
		ok, err = h.Exists(ctx, id)
		require.NoError(t, err)
		assert.False(t, ok)
		_, err = h.Signer(ctx, id)
		assert.ErrorIs(t, err, ErrKeyNotFound)
		_, err = s.Sign(rand.Reader, make([]byte, 32), crypto.SHA256)
		assert.ErrorIs(t, err, ErrKeyNotFound, "a held signer of a deleted key")
		_, _, err = h.KeyAttributes(ctx, id)
		assert.ErrorIs(t, err, ErrKeyNotFound)
		assert.ErrorIs(t, h.Delete(ctx, id), ErrKeyNotFound)
	}

	require.NoError(t, h.EnsureWrappingKey(ctx, "del-wrap", "hsmca/test/del-wrap"))
	require.NoError(t, h.Delete(ctx, "del-wrap"))
	_, err := h.Wrap(ctx, "del-wrap", []byte("x"), nil)
	assert.ErrorIs(t, err, ErrKeyNotFound)

	keys, err := h.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, keys)

	// The id is free again.
	_, err = h.Generate(ctx, "del-EC256", "hsmca/test/again", EC256)
	assert.NoError(t, err)
}

func TestGenerateRejects(t *testing.T) {
	_, h := openToken(t)
	ctx := context.Background()
	_, err := h.Generate(ctx, "dup", "hsmca/test/dup", EC256)
	require.NoError(t, err)
	_, err = h.Generate(ctx, "dup", "hsmca/test/dup", EC384)
	assert.ErrorIs(t, err, ErrKeyExists)
	_, err = h.Generate(ctx, "x", "hsmca/test/x", Algorithm("EC255"))
	assert.Error(t, err)
	_, err = h.Generate(ctx, "", "hsmca/test/x", EC256)
	assert.Error(t, err)
	_, err = h.Generate(ctx, "x", "", EC256)
	assert.Error(t, err)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = h.Generate(cancelled, "x", "hsmca/test/x", EC256)
	assert.ErrorIs(t, err, context.Canceled)
	_, err = h.Signer(ctx, "absent")
	assert.ErrorIs(t, err, ErrKeyNotFound)

	s, err := h.Signer(ctx, "dup")
	require.NoError(t, err)
	_, err = s.Sign(rand.Reader, []byte("short"), crypto.SHA256)
	assert.Error(t, err, "digest of the wrong length")
}

// TestConcurrentUse signs from many goroutines while keys are generated.
func TestConcurrentUse(t *testing.T) {
	_, h := openToken(t)
	ctx := context.Background()
	ec, err := h.Generate(ctx, "cc-ec", "hsmca/test/cc-ec", EC256)
	require.NoError(t, err)
	ed, err := h.Generate(ctx, "cc-ed", "hsmca/test/cc-ed", ED25519)
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 25 {
				msg := fmt.Appendf(nil, "%d-%d", g, i)
				d := sha256.Sum256(msg)
				sig, err := ec.Sign(rand.Reader, d[:], crypto.SHA256)
				if err == nil && !ecdsa.VerifyASN1(ec.Public().(*ecdsa.PublicKey), d[:], sig) {
					err = errors.New("ECDSA signature does not verify")
				}
				if err == nil {
					sig, err = ed.Sign(rand.Reader, msg, crypto.Hash(0))
					if err == nil && !ed25519.Verify(ed.Public().(ed25519.PublicKey), msg, sig) {
						err = errors.New("Ed25519 signature does not verify")
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			alg := []Algorithm{EC256, ED25519}[g%2]
			if _, err := h.Generate(ctx, fmt.Sprintf("cc-gen-%d", g), "hsmca/test/cc", alg); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	keys, err := h.List(ctx)
	require.NoError(t, err)
	assert.Len(t, keys, 10)
}

func TestHealthTokenInfoObserver(t *testing.T) {
	tok := testenv.NewToken(t)
	var c calls
	cfg := config(t, tok)
	cfg.Observer = c.observe
	h := openConfig(t, cfg)
	ctx := context.Background()
	require.NoError(t, h.Health(ctx))
	ti, err := h.TokenInfo(ctx)
	require.NoError(t, err)
	assert.Equal(t, tok.Label, ti.Label)
	assert.NotEmpty(t, ti.Serial)
	assert.Equal(t, 16, ti.PoolSize)
	assert.NotEmpty(t, ti.Manufacturer)

	s, err := h.Generate(ctx, "obs", "hsmca/test/obs", EC256)
	require.NoError(t, err)
	signAndVerify(t, s)
	assert.Equal(t, 1, c.count("C_Login"))
	assert.Equal(t, 1, c.count("C_GenerateKeyPair"))
	assert.Equal(t, 1, c.count("C_Sign"))
	assert.Equal(t, 1, c.count("C_GetSessionInfo"))
	assert.Equal(t, 1, c.count("C_GetTokenInfo"))

	require.NoError(t, h.Close())
	assert.ErrorIs(t, h.Health(ctx), ErrUnavailable)
	_, err = s.Sign(rand.Reader, make([]byte, 32), crypto.SHA256)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.NoError(t, h.Close(), "Close twice")
}

func TestConfigHidesPIN(t *testing.T) {
	slot := uint(3)
	cfg := Config{Module: "/m.so", TokenLabel: "t", Slot: &slot, PIN: "s3cr3t-pin"}
	for _, s := range []string{cfg.String(), fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), cfg.LogValue().String()} {
		assert.NotContains(t, s, "s3cr3t-pin")
	}
	assert.Contains(t, cfg.String(), "/m.so")
}

func TestParseAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Algorithm
		ok   bool
	}{
		{"EC256", EC256, true}, {"ec384", EC384, true}, {" EC521 ", EC521, true},
		{"RSA2048", RSA2048, true}, {"rsa3072", RSA3072, true}, {"RSA4096", RSA4096, true},
		{"Ed25519", ED25519, true}, {"RSA1024", "", false}, {"", "", false}, {"P256", "", false},
	} {
		got, err := ParseAlgorithm(tc.in)
		if tc.ok {
			assert.NoError(t, err, tc.in)
			assert.Equal(t, tc.want, got, tc.in)
		} else {
			assert.Error(t, err, tc.in)
		}
	}
}

func TestErrorClassification(t *testing.T) {
	invalid := pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)
	for _, tc := range []struct {
		name    string
		err     error
		code    string
		session bool
		pin     bool
	}{
		{"nil", nil, "", false, false},
		{"bare", invalid, "CKR_SESSION_HANDLE_INVALID", true, false},
		{"wrapped", fmt.Errorf("sign: %w", invalid), "CKR_SESSION_HANDLE_INVALID", true, false},
		{"flattened", fmt.Errorf("C_Encrypt: %v", pkcs11.Error(pkcs11.CKR_DEVICE_ERROR)), "CKR_DEVICE_ERROR", true, false},
		{"not logged in", pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN), "CKR_USER_NOT_LOGGED_IN", true, false},
		{"removed", pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED), "CKR_DEVICE_REMOVED", true, false},
		{"token absent", pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT), "CKR_TOKEN_NOT_PRESENT", true, false},
		{"closed", pkcs11.Error(pkcs11.CKR_SESSION_CLOSED), "CKR_SESSION_CLOSED", true, false},
		{"operation active", fmt.Errorf("C_EncryptInit: %v", pkcs11.Error(pkcs11.CKR_OPERATION_ACTIVE)), "CKR_OPERATION_ACTIVE", false, false},
		{"pin", fmt.Errorf("login: %w", pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)), "CKR_PIN_INCORRECT", false, true},
		{"locked", pkcs11.Error(pkcs11.CKR_PIN_LOCKED), "CKR_PIN_LOCKED", false, true},
		{"key handle", pkcs11.Error(pkcs11.CKR_KEY_HANDLE_INVALID), "CKR_KEY_HANDLE_INVALID", false, false},
		{"unavailable", fmt.Errorf("x: %w", ErrUnavailable), "unavailable", false, false},
		{"timeout", fmt.Errorf("sign: %w", &deadlineError{what: "no answer", after: time.Second}), "timeout", false, false},
		{"other", errors.New("boom"), "other", false, false},
	} {
		assert.Equal(t, tc.code, ErrorCode(tc.err), tc.name)
		assert.Equal(t, tc.session, isSessionFault(tc.err), tc.name)
		assert.Equal(t, tc.pin, IsPINError(tc.err), tc.name)
	}
}
