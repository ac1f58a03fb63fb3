package hsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

// tokenDir is the directory of tok in SoftHSM2's file store: the one whose
// token.object holds the label, padded with spaces as PKCS#11 stores it.
func tokenDir(t *testing.T, tok *testenv.Token) string {
	t.Helper()
	label := []byte(fmt.Sprintf("%-32s", tok.Label))
	dirs, err := os.ReadDir(tok.TokenDir)
	require.NoError(t, err)
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(tok.TokenDir, d.Name(), "token.object"))
		if err == nil && bytes.Contains(b, label) {
			return filepath.Join(tok.TokenDir, d.Name())
		}
	}
	t.Fatalf("no directory for token %q in %s", tok.Label, tok.TokenDir)
	return ""
}

// bumpGeneration makes SoftHSM2 read the token directory again at its next
// search, as it does when another process changed the token.
func bumpGeneration(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "generation")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Len(t, b, 8)
	binary.BigEndian.PutUint64(b, binary.BigEndian.Uint64(b)+1)
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

// copyObjects copies the key objects of one token directory into another
// and returns the paths of the copies.
func copyObjects(t *testing.T, from, to string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(from, "*.object"))
	require.NoError(t, err)
	var out []string
	for _, f := range files {
		if filepath.Base(f) == "token.object" {
			continue
		}
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		dst := filepath.Join(to, filepath.Base(f))
		require.NoError(t, os.WriteFile(dst, b, 0o600))
		out = append(out, dst)
	}
	return out
}

func wrapRoundTrip(ctx context.Context, h *HSM, id string) error {
	blob, err := h.Wrap(ctx, id, []byte("secret"), []byte("aad"))
	if err != nil {
		return err
	}
	pt, err := h.Unwrap(ctx, id, blob, []byte("aad"))
	if err == nil && string(pt) != "secret" {
		return fmt.Errorf("unwrapped %q", pt)
	}
	return err
}

// TestUndecryptableObject reproduces what followed a crash in the chaos
// test: with a private object on the token that SoftHSM2 cannot decrypt
// (here, one copied from another token, encrypted under that token's key),
// every search by CKA_ID fails with CKR_GENERAL_ERROR, and SoftHSM2 2.6
// leaves each failed search active on its session. The failures must stay
// on the calls that searched; signing with keys already found must go on,
// and once the object is gone nothing may answer CKR_OPERATION_ACTIVE nor
// need a rebuild of the context.
func TestUndecryptableObject(t *testing.T) {
	foreign := testenv.NewToken(t)
	tok := testenv.NewToken(t)
	var c calls
	cfg := config(t, tok)
	cfg.Observer = c.observe
	cfg.PoolSize = 4
	h := openConfig(t, cfg)
	hf := openConfig(t, config(t, foreign))
	ctx := context.Background()

	ec, err := h.Generate(ctx, "ec", "hsmca/test/ec", EC256)
	require.NoError(t, err)
	ed, err := h.Generate(ctx, "ed", "hsmca/test/ed", ED25519)
	require.NoError(t, err)
	require.NoError(t, h.EnsureWrappingKey(ctx, "wrap", "hsmca/test/wrap"))
	require.NoError(t, wrapRoundTrip(ctx, h, "wrap"))
	// Three private objects: SoftHSM2 decrypts with AES-CBC, and a wrong
	// key passes the padding check now and then.
	for i := range 3 {
		_, err := hf.Generate(ctx, fmt.Sprintf("foreign-%d", i), "hsmca/test/foreign", EC256)
		require.NoError(t, err)
	}

	dir := tokenDir(t, tok)
	copies := copyObjects(t, tokenDir(t, foreign), dir)
	bumpGeneration(t, dir)

	// The module's side of it, on a session of the test's own.
	p, slot := secondHandle(t, tok)
	s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	require.NoError(t, err)
	byID := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, []byte("ec"))}
	require.ErrorIs(t, p.FindObjectsInit(s, byID), pkcs11.Error(pkcs11.CKR_GENERAL_ERROR),
		"an object SoftHSM2 cannot decrypt must fail the search")
	if err := p.FindObjectsInit(s, byID); err != nil {
		t.Logf("after the failed search the module answers %v, so the failed search was left active", err)
	}
	_ = p.FindObjectsFinal(s)
	require.NoError(t, p.CloseSession(s))

	forgetAll := func() {
		h.cacheMu.Lock()
		clear(h.signers)
		clear(h.aeads)
		h.cacheMu.Unlock()
	}
	searchFails := func(what string, err error) {
		t.Helper()
		require.Error(t, err, what)
		assert.Equal(t, "CKR_GENERAL_ERROR", ErrorCode(err), "%s: %v", what, err)
		assert.NotErrorIs(t, err, ErrUnavailable, "%s: a search that fails is no session fault", what)
	}
	for range 2 * cfg.PoolSize {
		forgetAll()
		_, err := h.Exists(ctx, "ec")
		searchFails("exists", err)
		_, err = h.Signer(ctx, "ec")
		searchFails("EC signer", err)
		_, err = h.Signer(ctx, "ed")
		searchFails("Ed25519 signer", err)
		_, err = h.Wrap(ctx, "wrap", []byte("secret"), nil)
		searchFails("wrap", err)
		// Keys found before need no search.
		require.NoError(t, trySign(ec), "EC signature while searches fail")
		require.NoError(t, trySign(ed), "Ed25519 signature while searches fail")
	}

	for _, f := range copies {
		require.NoError(t, os.Remove(f))
	}
	bumpGeneration(t, dir)
	forgetAll()
	for range 3 * cfg.PoolSize {
		ok, err := h.Exists(ctx, "ec")
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, trySign(ec))
		require.NoError(t, trySign(ed))
		require.NoError(t, wrapRoundTrip(ctx, h, "wrap"))
		s, err := h.Signer(ctx, "ed")
		require.NoError(t, err)
		require.NoError(t, trySign(s))
	}
	_, err = h.SweepRemnants(ctx)
	require.NoError(t, err)
	require.NoError(t, h.Health(ctx))
	assert.Equal(t, 1, c.count("C_Login"), "no rebuild of the context")
}

// leaveSearchActive starts a search on every session the process has open
// on slot (session handles belong to the process, whichever library handle
// opened them) and returns how many there were.
func leaveSearchActive(t *testing.T, p *pkcs11.Ctx, slot uint) int {
	t.Helper()
	n := 0
	for hs := pkcs11.SessionHandle(1); hs < 1<<16; hs++ {
		info, err := p.GetSessionInfo(hs)
		if err != nil || info.SlotID != slot {
			continue
		}
		require.NoError(t, p.FindObjectsInit(hs, nil), "session %d", hs)
		n++
	}
	return n
}

// TestOperationLeftActive leaves a search active on every session of the
// token, as a failed search in a module like SoftHSM2 does. Every session
// is the pool's own, so each one that answers CKR_OPERATION_ACTIVE is
// replaced on the spot: no call fails and no new login is needed.
func TestOperationLeftActive(t *testing.T) {
	tok := testenv.NewToken(t)
	var c calls
	cfg := config(t, tok)
	cfg.Observer = c.observe
	cfg.PoolSize = 4
	h := openConfig(t, cfg)
	ctx := context.Background()

	ec, err := h.Generate(ctx, "ec", "hsmca/test/ec", EC256)
	require.NoError(t, err)
	ed, err := h.Generate(ctx, "ed", "hsmca/test/ed", ED25519)
	require.NoError(t, err)
	require.NoError(t, h.EnsureWrappingKey(ctx, "wrap", "hsmca/test/wrap"))
	// Calls that hold their sessions until all hold one: the pool opens
	// all its sessions (on a loaded machine, calls left to themselves may
	// follow one another on two).
	b, err := h.acquire(ctx)
	require.NoError(t, err)
	var holding atomic.Int64
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range cfg.PoolSize {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, b.run(ctx, time.Minute, "", func(*pkcs11.Ctx, pkcs11.SessionHandle) error {
				holding.Add(1)
				<-release
				return nil
			}))
		}()
	}
	require.Eventually(t, func() bool { return holding.Load() == int64(cfg.PoolSize) }, 10*time.Second, 5*time.Millisecond)
	close(release)
	wg.Wait()
	assert.NoError(t, trySign(ec))
	assert.NoError(t, trySign(ed))
	assert.NoError(t, wrapRoundTrip(ctx, h, "wrap"))

	p, slot := secondHandle(t, tok)
	require.GreaterOrEqual(t, leaveSearchActive(t, p, slot), 3)

	ok, err := h.Exists(ctx, "ec")
	require.NoError(t, err)
	require.True(t, ok)
	for range 3 * cfg.PoolSize {
		require.NoError(t, trySign(ec))
		require.NoError(t, trySign(ed))
		require.NoError(t, wrapRoundTrip(ctx, h, "wrap"))
	}
	require.NoError(t, h.Health(ctx))
	assert.Equal(t, 1, c.count("C_Login"), "no rebuild: one login at open")
}
