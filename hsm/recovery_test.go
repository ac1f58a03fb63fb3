package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

// secondHandle opens the module again the way another library in the same
// process would: it shares the library state, so what it does to sessions
// hits ours too.
func secondHandle(t *testing.T, tok *testenv.Token) (*pkcs11.Ctx, uint) {
	t.Helper()
	p := pkcs11.New(tok.Module)
	require.NotNil(t, p)
	t.Cleanup(p.Destroy) // never Finalize: the HSM under test owns the library
	if err := p.Initialize(); err != nil {
		require.ErrorIs(t, err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED))
	}
	slots, err := p.GetSlotList(true)
	require.NoError(t, err)
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		require.NoError(t, err)
		if ti.Label == tok.Label {
			return p, s
		}
	}
	t.Fatalf("token %q not visible to the second handle", tok.Label)
	return nil, 0
}

func trySign(s crypto.Signer) error {
	msg := []byte("after the fault")
	switch pub := s.Public().(type) {
	case ed25519.PublicKey:
		sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
		if err == nil && !ed25519.Verify(pub, msg, sig) {
			return errors.New("Ed25519 signature does not verify")
		}
		return err
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		if err == nil && !ecdsa.VerifyASN1(pub, d[:], sig) {
			return errors.New("ECDSA signature does not verify")
		}
		return err
	}
	return errors.New("unexpected key type")
}

// TestRecoveryAfterSessionsClosed closes every session of the token behind
// the HSM layer's back. Calls fail with ErrUnavailable for a while, then the
// very same signers work again, with a single new login.
func TestRecoveryAfterSessionsClosed(t *testing.T) {
	tok := testenv.NewToken(t)
	var c calls
	cfg := config(t, tok)
	cfg.Observer = c.observe
	h := openConfig(t, cfg)
	ctx := context.Background()

	ec, err := h.Generate(ctx, "rec-ec", "hsmca/test/rec-ec", EC256)
	require.NoError(t, err)
	ed, err := h.Generate(ctx, "rec-ed", "hsmca/test/rec-ed", ED25519)
	require.NoError(t, err)
	require.NoError(t, h.EnsureWrappingKey(ctx, "rec-wrap", "hsmca/test/rec-wrap"))
	blob, err := h.Wrap(ctx, "rec-wrap", []byte("secret"), nil)
	require.NoError(t, err)
	require.NoError(t, trySign(ec))
	require.NoError(t, trySign(ed))
	require.NoError(t, h.Health(ctx))

	p, slot := secondHandle(t, tok)
	require.NoError(t, p.CloseAllSessions(slot))

	sawUnavailable := false
	for _, s := range []crypto.Signer{ec, ed} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := trySign(s)
			if err == nil {
				break
			}
			require.ErrorIs(t, err, ErrUnavailable, "while reconnecting every failure must be ErrUnavailable")
			assert.NotContains(t, err.Error(), tok.PIN)
			sawUnavailable = true
			if herr := h.Health(ctx); herr != nil {
				assert.ErrorIs(t, herr, ErrUnavailable)
			}
			require.True(t, time.Now().Before(deadline), "signer did not recover within 10s: %v", err)
			time.Sleep(20 * time.Millisecond)
		}
	}
	assert.True(t, sawUnavailable, "closing all sessions went unnoticed")
	require.NoError(t, h.Health(ctx))
	assert.Equal(t, 2, c.count("C_Login"), "one login at open, one for the rebuild")

	got, err := h.Unwrap(ctx, "rec-wrap", blob, nil)
	require.NoError(t, err)
	assert.Equal(t, []byte("secret"), got)
	again, err := h.Signer(ctx, "rec-ec")
	require.NoError(t, err)
	assert.Same(t, ec, again)
	_, err = h.Generate(ctx, "rec-after", "hsmca/test/rec-after", EC256)
	assert.NoError(t, err)
}

// TestHealthNoticesLostLogin: with no signing traffic, the readiness probe
// alone finds the dropped sessions and starts the rebuild.
func TestHealthNoticesLostLogin(t *testing.T) {
	tok := testenv.NewToken(t)
	h := openConfig(t, config(t, tok))
	ctx := context.Background()
	require.NoError(t, h.Health(ctx))
	p, slot := secondHandle(t, tok)
	require.NoError(t, p.CloseAllSessions(slot))

	err := h.Health(ctx)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUnavailable)
	require.Eventually(t, func() bool { return h.Health(ctx) == nil }, 10*time.Second, 20*time.Millisecond)
}

// TestRebuildStopsOnRefusedPIN changes the user PIN behind the HSM
// layer's back, then drops its sessions: the rebuild's single login is
// refused and it must not try again.
func TestRebuildStopsOnRefusedPIN(t *testing.T) {
	tok := testenv.NewToken(t)
	var c calls
	cfg := config(t, tok)
	cfg.Observer = c.observe
	h := openConfig(t, cfg)
	ctx := context.Background()
	s, err := h.Generate(ctx, "pin-ec", "hsmca/test/pin-ec", EC256)
	require.NoError(t, err)

	p, slot := secondHandle(t, tok)
	sess, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	require.NoError(t, err)
	if err := p.Login(sess, pkcs11.CKU_USER, tok.PIN); err != nil {
		require.ErrorIs(t, err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN))
	}
	require.NoError(t, p.SetPIN(sess, tok.PIN, "87654321"))
	require.NoError(t, p.CloseAllSessions(slot))

	err = trySign(s)
	require.ErrorIs(t, err, ErrUnavailable)
	require.Eventually(t, func() bool {
		err := h.Health(ctx)
		return err != nil && IsPINError(err)
	}, 10*time.Second, 20*time.Millisecond, "Health must say the login was refused")
	err = h.Health(ctx)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, err.Error(), "not retrying")
	assert.NotContains(t, err.Error(), tok.PIN)
	time.Sleep(time.Second)
	assert.Equal(t, 2, c.count("C_Login"), "a refused PIN must not be retried")
	assert.ErrorIs(t, trySign(s), ErrUnavailable)
}

// TestRebuildBacksOff makes the first reconnect attempts fail (a token
// cannot be made to refuse C_Initialize on demand, so a hook fails the
// opens): attempts are spaced ever further apart, each logs in once,
// Health says why the HSM is down, and the signer recovers.
func TestRebuildBacksOff(t *testing.T) {
	tok := testenv.NewToken(t)
	h := openConfig(t, config(t, tok))
	ctx := context.Background()
	s, err := h.Generate(ctx, "bo-ec", "hsmca/test/bo-ec", EC256)
	require.NoError(t, err)

	var (
		mu       sync.Mutex
		attempts []time.Time
	)
	beforeOpen = func() error {
		mu.Lock()
		attempts = append(attempts, time.Now())
		n := len(attempts)
		mu.Unlock()
		if n <= 3 {
			return fmt.Errorf("failed to initialize module: %w", pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT))
		}
		return nil
	}
	t.Cleanup(func() { beforeOpen = nil })

	p, slot := secondHandle(t, tok)
	require.NoError(t, p.CloseAllSessions(slot))
	require.ErrorIs(t, trySign(s), ErrUnavailable)

	require.Eventually(t, func() bool {
		err := h.Health(ctx)
		return err != nil && strings.Contains(err.Error(), "attempt 1 failed")
	}, 5*time.Second, 10*time.Millisecond, "Health must report the failed attempt")
	require.Eventually(t, func() bool { return trySign(s) == nil }, 10*time.Second, 20*time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, attempts, 4, "one open (one login) per attempt")
	for i := 2; i < len(attempts); i++ {
		prev, gap := attempts[i-1].Sub(attempts[i-2]), attempts[i].Sub(attempts[i-1])
		assert.GreaterOrEqual(t, gap, firstRetry<<(i-1), "attempt %d came after %s (previous gap %s)", i+1, gap, prev)
	}
}

// TestStaleHandleIsFoundAgain re-creates a key's objects behind the
// signer's back: its handle goes stale while the login stays, and the
// signer finds the key again by CKA_ID.
func TestStaleHandleIsFoundAgain(t *testing.T) {
	tok := testenv.NewToken(t)
	h := openConfig(t, config(t, tok))
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	s, err := h.Import(ctx, "stale", "hsmca/test/stale", key)
	require.NoError(t, err)
	require.NoError(t, trySign(s))

	p, slot := secondHandle(t, tok)
	sess, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	require.NoError(t, err)
	defer p.CloseSession(sess)
	require.NoError(t, p.FindObjectsInit(sess, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, []byte("stale"))}))
	objs, _, err := p.FindObjects(sess, 10)
	require.NoError(t, err)
	require.NoError(t, p.FindObjectsFinal(sess))
	require.Len(t, objs, 2, "private and public key objects")
	for _, o := range objs {
		require.NoError(t, p.DestroyObject(sess, o))
	}

	_, err = h.Import(ctx, "stale", "hsmca/test/stale", key)
	require.NoError(t, err)
	require.NoError(t, trySign(s), "the old signer must find the re-created key")
	require.NoError(t, h.Health(ctx), "a stale handle is not a session fault")
}

// A call still unanswered when its backend is closed for a rebuild keeps
// its sessions and its use of the module past drainWait; once it returns,
// the backend lets go of both, so that a later rebuild can re-initialise
// the module (for a module behind a socket, what reconnects it).
func TestUnansweredCallReleasesTheModuleWhenItReturns(t *testing.T) {
	tok := testenv.NewToken(t)
	old := drainWait
	drainWait = 50 * time.Millisecond
	t.Cleanup(func() { drainWait = old })
	h := openConfig(t, config(t, tok))
	ctx := context.Background()
	s, err := h.Generate(ctx, "un-ec", "hsmca/test/un-ec", EC256)
	require.NoError(t, err)
	users := func() int {
		libMu.Lock()
		defer libMu.Unlock()
		if m := modules[loadKey(tok.Module)]; m != nil {
			return m.users
		}
		return 0
	}
	require.Equal(t, 1, users())

	b, err := h.acquire(ctx)
	require.NoError(t, err)
	release := make(chan struct{})
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		_ = b.run(ctx, time.Minute, "", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
			<-release
			return nil
		})
	}()
	require.Eventually(t, func() bool { _, n := h.Sessions(); return n == 1 }, 5*time.Second, time.Millisecond)

	h.takeDown(b, pkcs11.Error(pkcs11.CKR_DEVICE_ERROR))
	// The rebuild gives up waiting for the call and opens a new backend
	// beside it: the module has two users.
	require.Eventually(t, func() bool { return trySign(s) == nil }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 2, users(), "the unanswered call's backend still holds the module")

	close(release)
	<-returned
	require.Eventually(t, func() bool { return users() == 1 }, 5*time.Second, time.Millisecond,
		"once the call returned its backend let go of the module")
	require.NoError(t, trySign(s))
}
