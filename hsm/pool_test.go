package hsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSessionLimitShrinksThePool plays a token that refuses a fourth work
// session with CKR_SESSION_COUNT (SoftHSM2 has no limit, so the opening is
// wrapped). Eight calls at once, each holding its session until all that
// could start have: three get sessions, the five others are refused one,
// and each refusal shrinks the pool by one; they wait for a session
// instead of failing, and all eight succeed. Signing goes on with the
// three sessions left.
func TestSessionLimitShrinksThePool(t *testing.T) {
	tok := testenv.NewToken(t)
	// The token gives three sessions. The count and the open are one step:
	// two calls racing past a separate check would open a fourth.
	var (
		openMu sync.Mutex
		opened int
	)
	real := openSession
	openSession = func(p *pkcs11.Ctx, slot uint) (pkcs11.SessionHandle, error) {
		openMu.Lock()
		defer openMu.Unlock()
		if opened >= 3 {
			return 0, pkcs11.Error(pkcs11.CKR_SESSION_COUNT)
		}
		s, err := real(p, slot)
		if err == nil {
			opened++
		}
		return s, err
	}
	t.Cleanup(func() { openSession = real })

	var logs syncBuffer
	cfg := config(t, tok)
	cfg.PoolSize = 8
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	h := openConfig(t, cfg)
	ctx := context.Background()
	s, err := h.Generate(ctx, "limited", "hsmca/test/limited", EC256)
	require.NoError(t, err)
	b, err := h.acquire(ctx)
	require.NoError(t, err)

	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	// Should a check below fail, the held calls still end and give their
	// sessions back before the handle closes.
	t.Cleanup(free)
	var holding atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, b.run(ctx, time.Minute, "", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
				holding.Add(1)
				<-release
				_, err := p.GetSessionInfo(s)
				return err
			}))
		}()
	}
	require.Eventually(t, func() bool { n, _ := h.Sessions(); return n == 3 && holding.Load() == 3 },
		10*time.Second, 5*time.Millisecond, "three sessions held, the pool shrunk to them")
	free()
	wg.Wait()
	for range 20 {
		require.NoError(t, trySign(s))
	}
	size, inUse := h.Sessions()
	assert.Equal(t, 3, size, "the pool stays at the sessions the token gave")
	assert.Zero(t, inUse)
	assert.Equal(t, 5, strings.Count(logs.String(), "CKR_SESSION_COUNT"), "one line per session given up")
	ti, err := h.TokenInfo(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, ti.PoolSize)
}

func TestPoolSizeForTokenLimit(t *testing.T) {
	assert.Equal(t, 16, poolSizeFor(0, 16), "no limit")
	assert.Equal(t, 16, poolSizeFor(-1, 16), "limit unknown")
	assert.Equal(t, 16, poolSizeFor(64, 16))
	assert.Equal(t, 7, poolSizeFor(8, 16), "the login session takes one")
	assert.Equal(t, 1, poolSizeFor(1, 16), "never below one")
}

func TestSessionCount(t *testing.T) {
	assert.Equal(t, -1, sessionCount(pkcs11.CK_UNAVAILABLE_INFORMATION))
	assert.Equal(t, 0, sessionCount(0), "CK_EFFECTIVELY_INFINITE")
	assert.Equal(t, 0, sessionCount(^uint(0)-1), "opencryptoki's widened 'no limit'")
	assert.Equal(t, 64, sessionCount(64))
}

// TestCloseUnderLoad closes the handle while signers are busy: no call
// reaches the module once it is being finalised (it would crash the
// process), and every signature either succeeds or says the HSM is
// unavailable.
func TestCloseUnderLoad(t *testing.T) {
	for range 3 {
		tok := testenv.NewToken(t)
		h, err := Open(config(t, tok))
		require.NoError(t, err)
		s, err := h.Generate(context.Background(), "busy", "hsmca/test/busy", EC256)
		require.NoError(t, err)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := trySign(s); err != nil {
						assert.ErrorIs(t, err, ErrUnavailable)
						return
					}
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		require.NoError(t, h.Close())
		close(stop)
		wg.Wait()
	}
}

// A deadline error is "still running" only for a call that was sent.
func TestStillRunning(t *testing.T) {
	assert.True(t, StillRunning(fmt.Errorf("wrapped: %w", &deadlineError{what: "C_Sign", after: time.Second})))
	assert.False(t, StillRunning(&deadlineError{what: "no free session", after: time.Second, notSent: true}))
	assert.False(t, StillRunning(ErrUnavailable))
	assert.False(t, StillRunning(nil))
}

// A failure after a call that reached the token (Import's read-back of
// the key it created) is never taken for one that changed nothing, and
// still says what it was.
func TestReachedIsNeverNotSent(t *testing.T) {
	for _, inner := range []error{
		&deadlineError{what: "no free session", after: time.Second, notSent: true},
		fmt.Errorf("%w: the sessions are being closed%w", ErrUnavailable, notSentMark),
	} {
		require.True(t, NotSent(inner))
		err := fmt.Errorf("hsm: import: %w", reached{inner})
		assert.False(t, NotSent(err), "%v", err)
		assert.ErrorIs(t, err, ErrUnavailable)
		assert.False(t, StillRunning(err))
		assert.Equal(t, inner.Error(), reached{inner}.Error())
	}
	var d *deadlineError
	assert.True(t, errors.As(reached{&deadlineError{what: "C_FindObjects", after: time.Second}}, &d))
	assert.True(t, StillRunning(reached{&deadlineError{what: "C_FindObjects", after: time.Second}}))
}

// A call whose caller gives up (its context ends) goes on in the token:
// the error is the context's, and the call is still running.
func TestCallOutlivesItsContext(t *testing.T) {
	tok := testenv.NewToken(t)
	h := openConfig(t, config(t, tok))
	b, err := h.acquire(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.run(ctx, time.Hour, "", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	cancel()
	err = <-done
	close(release)
	require.ErrorIs(t, err, context.Canceled)
	assert.True(t, StillRunning(err))
	assert.False(t, NotSent(err))
	assert.Equal(t, "context canceled", err.Error())
}
