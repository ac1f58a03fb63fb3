package hsm

import (
	"context"
	"crypto"
	"crypto/sha256"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

// copyOf is the session copy k signs through in h's backend, 0 if none.
func copyOf(t *testing.T, h *HSM, k *keySigner) pkcs11.ObjectHandle {
	t.Helper()
	b, err := h.acquire(context.Background())
	require.NoError(t, err)
	r := k.res.Load()
	if r == nil || r.gen != b.gen {
		return 0
	}
	return r.copy
}

// objectExists reads one attribute of obj on a work session of h.
func objectExists(t *testing.T, h *HSM, obj pkcs11.ObjectHandle) bool {
	t.Helper()
	b, err := h.acquire(context.Background())
	require.NoError(t, err)
	err = b.run(context.Background(), h.cfg.CallTimeout, "", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		_, err := p.GetAttributeValue(s, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil)})
		return err
	})
	if err != nil {
		require.True(t, isHandleInvalid(err), "unexpected error: %v", err)
		return false
	}
	return true
}

// TestSessionCopies checks that on SoftHSM2 a key signs through a session
// copy of its private key (by default), that the copy is a session
// object which keeps the key sensitive and unextractable and is never
// taken for a key of its own (lookups by id, the list, the sweep), that
// Delete destroys it, and that "off" makes none.
func TestSessionCopies(t *testing.T) {
	tok := testenv.NewToken(t)
	h := openConfig(t, config(t, tok))
	ctx := context.Background()
	s, err := h.Generate(ctx, "copied", LabelPrefix+"test/copied", EC256)
	require.NoError(t, err)
	k := s.(*keySigner)
	signAndVerify(t, s)
	cp := copyOf(t, h, k)
	require.NotZero(t, cp, "SoftHSM2 signs through a session copy by default")
	assert.NotEqual(t, k.res.Load().priv, cp)

	a, err := h.attrs(ctx, h.b, cp, pkcs11.CKA_TOKEN, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_ID)
	require.NoError(t, err)
	assert.Equal(t, []byte{0}, a[0].Value, "the copy is a session object")
	assert.Equal(t, []byte{1}, a[1].Value, "the copy stays sensitive")
	assert.Equal(t, []byte{0}, a[2].Value, "the copy stays unextractable")
	assert.True(t, isCopyID(a[3].Value))

	privs, err := h.findByID(ctx, h.b, "copied", classPtr(pkcs11.CKO_PRIVATE_KEY))
	require.NoError(t, err)
	assert.Equal(t, []pkcs11.ObjectHandle{k.res.Load().priv}, privs, "a lookup by id finds the token object alone")
	keys, err := h.List(ctx)
	require.NoError(t, err)
	require.Len(t, keys, 1, "the copy is not listed")
	assert.Equal(t, "copied", keys[0].ID)
	n, err := h.SweepRemnants(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.True(t, objectExists(t, h, cp), "the sweep leaves the copy")

	require.NoError(t, h.Delete(ctx, "copied"))
	assert.False(t, objectExists(t, h, cp), "Delete destroys the copy with the key")

	off := config(t, tok)
	off.SessionCopies = CopiesOff
	h2 := openConfig(t, off)
	s2, err := h2.Generate(ctx, "plain", LabelPrefix+"test/plain", EC256)
	require.NoError(t, err)
	signAndVerify(t, s2)
	assert.Zero(t, copyOf(t, h2, s2.(*keySigner)), "no copy when off")

	bad := config(t, tok)
	bad.SessionCopies = "sometimes"
	_, err = Open(bad)
	assert.ErrorContains(t, err, `session copies "sometimes"`)
}

// TestSessionCopyFollowsItsKey: a key destroyed behind the daemon's back
// (another replica on the same token) stops signing at the copy's next
// check, and its copy is destroyed; a copy that stops working (its
// session closed) leaves the key signing with its token object; a key
// whose object refuses copies (CKA_COPYABLE false) signs without one.
func TestSessionCopyFollowsItsKey(t *testing.T) {
	tok := testenv.NewToken(t)
	h := openConfig(t, config(t, tok))
	ctx := context.Background()
	d := sha256.Sum256([]byte("m"))

	s, err := h.Generate(ctx, "elsewhere", LabelPrefix+"test/elsewhere", EC256)
	require.NoError(t, err)
	k := s.(*keySigner)
	_, err = s.Sign(nil, d[:], crypto.SHA256)
	require.NoError(t, err)
	cp := copyOf(t, h, k)
	require.NotZero(t, cp)
	// Another process destroys the key: here, a session of another handle.
	other := openConfig(t, config(t, tok))
	privs, err := other.findByID(ctx, other.b, "elsewhere", nil)
	require.NoError(t, err)
	require.Len(t, privs, 2)
	for _, o := range privs {
		require.NoError(t, other.b.run(ctx, other.cfg.CallTimeout, "", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
			return p.DestroyObject(s, o)
		}))
	}
	_, err = s.Sign(nil, d[:], crypto.SHA256)
	assert.NoError(t, err, "until its next check the copy still signs")
	prev := copyRecheck
	copyRecheck = 0
	t.Cleanup(func() { copyRecheck = prev })
	_, err = s.Sign(nil, d[:], crypto.SHA256)
	assert.ErrorIs(t, err, ErrKeyNotFound)
	assert.False(t, objectExists(t, h, cp), "the copy went with its key")
	copyRecheck = prev

	s, err = h.Generate(ctx, "lost", LabelPrefix+"test/lost", EC256)
	require.NoError(t, err)
	k = s.(*keySigner)
	signAndVerify(t, s)
	cp = copyOf(t, h, k)
	require.NotZero(t, cp)
	h.dropCopy(ctx, h.b, cp) // as if its session had closed
	signAndVerify(t, s)
	assert.Equal(t, h.b.gen, k.noCopyGen.Load())
	assert.Zero(t, copyOf(t, h, k), "signs with its token object from then on")

	mech, pubT, privT, err := pairTemplates("fixed", LabelPrefix+"test/fixed", EC256, false)
	require.NoError(t, err)
	privT = append(privT, pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false))
	require.NoError(t, h.b.run(ctx, h.cfg.KeygenTimeout, "", func(p *pkcs11.Ctx, ss pkcs11.SessionHandle) error {
		_, _, err := p.GenerateKeyPair(ss, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pubT, privT)
		return err
	}))
	s, err = h.Signer(ctx, "fixed")
	require.NoError(t, err)
	k = s.(*keySigner)
	signAndVerify(t, s)
	assert.Zero(t, copyOf(t, h, k), "a key that may not be copied signs with its token object")
}

// TestSessionCopiesBounded: past maxCopies copies, keys sign with their
// token objects; a destroyed copy frees its place.
func TestSessionCopiesBounded(t *testing.T) {
	prev := maxCopies
	maxCopies = 1
	t.Cleanup(func() { maxCopies = prev })
	_, h := openToken(t)
	ctx := context.Background()
	first, err := h.Generate(ctx, "first", LabelPrefix+"test/first", EC256)
	require.NoError(t, err)
	second, err := h.Generate(ctx, "second", LabelPrefix+"test/second", EC256)
	require.NoError(t, err)
	signAndVerify(t, first)
	signAndVerify(t, second)
	assert.NotZero(t, copyOf(t, h, first.(*keySigner)))
	assert.Zero(t, copyOf(t, h, second.(*keySigner)), "past the bound the key signs with its token object")
	require.NoError(t, h.Delete(ctx, "first"))
	third, err := h.Generate(ctx, "third", LabelPrefix+"test/third", EC256)
	require.NoError(t, err)
	signAndVerify(t, third)
	assert.NotZero(t, copyOf(t, h, third.(*keySigner)), "the deleted key's copy freed its place")
}

// BenchmarkSignSessionCopy signs with a key's token object and with its
// session copy, side by side on one token: `go test -run '^$' -bench
// SignSessionCopy ./hsm/`.
func BenchmarkSignSessionCopy(b *testing.B) {
	tok := testenv.NewToken(b)
	ctx := context.Background()
	d := sha256.Sum256([]byte("bench"))
	var signers [2]crypto.Signer
	for i, mode := range []string{CopiesOff, CopiesOn} {
		h, err := Open(Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, SessionCopies: mode})
		require.NoError(b, err)
		b.Cleanup(func() { _ = h.Close() })
		if i == 0 {
			signers[i], err = h.Generate(ctx, "bench", LabelPrefix+"test/bench", EC256)
		} else {
			signers[i], err = h.Signer(ctx, "bench")
		}
		require.NoError(b, err)
	}
	for round := 0; round < 2; round++ {
		for i, name := range []string{"token-object", "session-copy"} {
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					if _, err := signers[i].Sign(nil, d[:], crypto.SHA256); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
