package hsm

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

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
// wrapped): the pool settles at what the token allows, says so once per
// session given up, and no call fails.
func TestSessionLimitShrinksThePool(t *testing.T) {
	tok := testenv.NewToken(t)
	var opened atomic.Int64
	real := openSession
	openSession = func(p *pkcs11.Ctx, slot uint) (pkcs11.SessionHandle, error) {
		if opened.Load() >= 3 {
			return 0, pkcs11.Error(pkcs11.CKR_SESSION_COUNT)
		}
		s, err := real(p, slot)
		if err == nil {
			opened.Add(1)
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

	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				assert.NoError(t, trySign(s))
			}
		}()
	}
	wg.Wait()
	size, inUse := h.Sessions()
	assert.Equal(t, 3, size, "the pool shrinks to the sessions the token gave")
	assert.Zero(t, inUse)
	assert.Contains(t, logs.String(), "CKR_SESSION_COUNT")
	ti, err := h.TokenInfo(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, ti.PoolSize)
}

func TestSessionCount(t *testing.T) {
	assert.Equal(t, -1, sessionCount(pkcs11.CK_UNAVAILABLE_INFORMATION))
	assert.Equal(t, 0, sessionCount(0), "CK_EFFECTIVELY_INFINITE")
	assert.Equal(t, 0, sessionCount(^uint(0)-1), "opencryptoki's widened 'no limit'")
	assert.Equal(t, 64, sessionCount(64))
}
