// Package hsm keeps hsmca's keys in a PKCS#11 token: generation, import,
// signing, AES-GCM wrapping and deletion, plus the slot and token chores the
// ops CLI needs. Keys are found by CKA_ID and never leave the token.
//
// Everything goes through one initialised context per module (module.go)
// and, per open token, one login and one pool of sessions (pool.go). Each
// PKCS#11 call runs under a deadline: a call past it answers at once with
// an error wrapping ErrUnavailable, its session is retired when the call
// finally returns, and a circuit breaker stops sending work to a token
// whose calls keep stalling until a probe gets an answer (breaker.go).
//
// Errors are classified: a session-level return code (session closed,
// device error, user not logged in ...) takes the HSM out of service and a
// background rebuild opens new sessions and logs in again (re-initialising
// the library when this handle is its only user, which reconnects a module
// behind a socket), once per attempt with exponential backoff. Meanwhile
// every call fails fast with an error wrapping ErrUnavailable and Health
// says why. Signers handed out before the fault keep working afterwards:
// they find their key again by CKA_ID.
package hsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
)

// Config says which token to use and how.
type Config struct {
	// Module is the path of the PKCS#11 library.
	Module string
	// TokenLabel selects the token by label (preferred: SoftHSM2 moves
	// tokens between slots).
	TokenLabel string
	// Slot selects the token by slot id when TokenLabel is empty.
	Slot *uint
	// PIN is the user PIN. It is never logged nor put in an error.
	PIN string
	// PoolSize bounds the sessions used for work (the login holds one
	// more); 0 means 16. A token that allows fewer gets fewer.
	PoolSize int
	// PoolWaitTimeout bounds the wait for a free session; 0 means 5s (it
	// never means "forever").
	PoolWaitTimeout time.Duration
	// CallTimeout bounds each PKCS#11 call (or the few calls of one
	// operation, such as a search and its reads); 0 means 5s.
	CallTimeout time.Duration
	// KeygenTimeout bounds key generation, which takes seconds for large
	// RSA keys on slow tokens; 0 means 60s.
	KeygenTimeout time.Duration
	// BreakerThreshold is how many calls in a row may pass their deadline
	// before the circuit opens; 0 means 3.
	BreakerThreshold int
	// SessionCopies says whether each key signs through a session copy
	// of its token object (copies.go): CopiesAuto (the default, "") for
	// tokens where that is known to be faster (SoftHSM2), CopiesOn for any
	// token that allows it, CopiesOff never.
	SessionCopies string
	// Observer, if set, is called after each PKCS#11-level operation with
	// the function name ("C_Sign", "C_GenerateKeyPair" ...), its duration
	// and its error.
	Observer func(function string, d time.Duration, err error)
	// Logger receives reconnect notices; nil means slog.Default().
	Logger *slog.Logger
}

// String describes the config without the PIN.
func (c Config) String() string {
	slot := "-"
	if c.Slot != nil {
		slot = fmt.Sprint(*c.Slot)
	}
	return fmt.Sprintf("hsm.Config{Module: %q, TokenLabel: %q, Slot: %s, PIN: [redacted], PoolSize: %d, PoolWaitTimeout: %s, CallTimeout: %s, KeygenTimeout: %s}",
		c.Module, c.TokenLabel, slot, c.PoolSize, c.PoolWaitTimeout, c.CallTimeout, c.KeygenTimeout)
}

// GoString keeps %#v from printing the PIN.
func (c Config) GoString() string { return c.String() }

// LogValue keeps slog from printing the PIN.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("module", c.Module), slog.String("token_label", c.TokenLabel),
		slog.Int("pool_size", c.PoolSize), slog.Duration("pool_wait_timeout", c.PoolWaitTimeout),
		slog.Duration("call_timeout", c.CallTimeout), slog.Duration("keygen_timeout", c.KeygenTimeout)}
	if c.Slot != nil {
		attrs = append(attrs, slog.Uint64("slot", uint64(*c.Slot)))
	}
	return slog.GroupValue(attrs...)
}

const (
	defaultPoolSize      = 16
	defaultPoolWait      = 5 * time.Second
	defaultCallTimeout   = 5 * time.Second
	defaultKeygenTimeout = 60 * time.Second
	defaultBreakerAfter  = 3
	gcmNonceSize         = 12
	firstRetry           = 100 * time.Millisecond
	maxRetry             = 5 * time.Second
	// A context that stayed up this long starts its next rebuild with a
	// short delay again; one that fails sooner keeps doubling, so a token
	// that breaks right after each login is not logged into in a loop.
	stableAfter = time.Minute
)

// drainWait bounds how long closing a backend waits for its calls (a
// variable for tests).
var drainWait = 30 * time.Second

// beforeOpen, when set by a test, runs at the start of every open of the
// token and can make it fail: a real token cannot be made to refuse a
// reconnect on demand.
var beforeOpen func() error

// HSM is an open token. All methods are safe for concurrent use.
type HSM struct {
	cfg Config
	log *slog.Logger

	mu         sync.RWMutex
	b          *backend // nil while down
	down       error    // why b is nil
	closed     bool
	stop       chan struct{}
	rebuilding chan struct{} // closed when the latest rebuild has ended
	retry      time.Duration // delay before the last rebuild attempt
	upSince    time.Time
	lastGen    uint64

	// busy counts sessions held by operations right now.
	busy atomic.Int64
	// poolSize is the effective pool size: the configured one, less what
	// the token refused.
	poolSize atomic.Int64
	// caps is the token's mechanism list, read at each (re)open.
	caps atomic.Pointer[Capabilities]
	brk  breaker

	cacheMu sync.Mutex
	signers map[string]*keySigner
	aeads   map[string]*aesKey
}

var errClosed = fmt.Errorf("%w: the HSM handle is closed%w", ErrUnavailable, notSentMark)

// notSentMark adds errNotSent to an error without changing its text.
var notSentMark = silent{errNotSent}

type silent struct{ error }

func (silent) Error() string   { return "" }
func (s silent) Unwrap() error { return s.error }

// Open logs into the token and returns a handle on it.
func Open(cfg Config) (*HSM, error) {
	if cfg.Module == "" {
		return nil, errors.New("hsm: no PKCS#11 module configured")
	}
	if cfg.TokenLabel == "" && cfg.Slot == nil {
		return nil, errors.New("hsm: no token selected: set a token label or a slot")
	}
	if cfg.PIN == "" {
		return nil, errors.New("hsm: no user PIN given")
	}
	switch cfg.SessionCopies {
	case "":
		cfg.SessionCopies = CopiesAuto
	case CopiesAuto, CopiesOn, CopiesOff:
	default:
		return nil, fmt.Errorf("hsm: session copies %q: want %s, %s or %s", cfg.SessionCopies, CopiesAuto, CopiesOn, CopiesOff)
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = defaultPoolSize
	}
	if cfg.PoolWaitTimeout <= 0 {
		cfg.PoolWaitTimeout = defaultPoolWait
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = defaultCallTimeout
	}
	if cfg.KeygenTimeout <= 0 {
		cfg.KeygenTimeout = defaultKeygenTimeout
	}
	if cfg.BreakerThreshold <= 0 {
		cfg.BreakerThreshold = defaultBreakerAfter
	}
	h := &HSM{
		cfg:     cfg,
		log:     cfg.Logger,
		stop:    make(chan struct{}),
		signers: map[string]*keySigner{},
		aeads:   map[string]*aesKey{},
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.poolSize.Store(int64(cfg.PoolSize))
	h.brk.h = h
	b, err := h.openBackend()
	if err != nil {
		return nil, err
	}
	h.lastGen++
	b.gen = h.lastGen
	h.b = b
	h.upSince = time.Now()
	return h, nil
}

// token describes the selected token for messages.
func (h *HSM) token() string {
	if h.cfg.TokenLabel != "" {
		return fmt.Sprintf("token %q", h.cfg.TokenLabel)
	}
	return fmt.Sprintf("the token in slot %d", *h.cfg.Slot)
}

// backend is one generation of the token's sessions: a login session
// (which keeps the application logged in: closing an application's last
// session logs it out) and a pool of work sessions, on the shared module.
type backend struct {
	gen   uint64
	m     *module
	p     *pkcs11.Ctx
	slot  uint
	login pkcs11.SessionHandle
	pool  *pool
	// inflight counts goroutines inside PKCS#11 calls on this backend,
	// including calls past their deadline that have not returned yet.
	// Calls enter under mu, and none enters once closing is set, so that
	// closeBackend's wait covers every call that can still touch the
	// module before it is finalised.
	inflight sync.WaitGroup
	mu       sync.Mutex
	closing  bool

	// copies: keys sign through session copies made on the login
	// session (copies.go); loginMu serialises those calls, copyCount
	// bounds them.
	copies    bool
	loginMu   sync.Mutex
	copyCount atomic.Int64
}

// enter counts a call in, unless the backend is closing.
func (b *backend) enter() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return false
	}
	b.inflight.Add(1)
	return true
}

// openBackend opens the module (re-initialising it when asked and this
// handle is its sole user), finds the token, logs in once and reads the
// token's mechanisms and session limit.
func (h *HSM) openBackend() (*backend, error) {
	return h.openBackendReinit(false)
}

func (h *HSM) openBackendReinit(reinit bool) (*backend, error) {
	if beforeOpen != nil {
		if err := beforeOpen(); err != nil {
			return nil, err
		}
	}
	libMu.Lock()
	defer libMu.Unlock()
	m, err := openModule(h.cfg.Module)
	if err != nil {
		return nil, h.openError(err)
	}
	if reinit {
		if _, err := m.reinit(); err != nil {
			m.release()
			return nil, err
		}
	}
	b, err := h.login(m)
	if err != nil {
		m.release()
		return nil, err
	}
	return b, nil
}

// login finds the slot, opens the login session and logs in.
func (h *HSM) login(m *module) (*backend, error) {
	m.lockCalls()
	defer m.unlockCalls()
	slot, err := h.findSlot(m.p)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	ls, err := m.p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	h.observe("C_OpenSession", start, err)
	if err != nil {
		return nil, fmt.Errorf("hsm: open a session on %s: %w", h.token(), err)
	}
	start = time.Now()
	err = m.p.Login(ls, pkcs11.CKU_USER, h.cfg.PIN)
	h.observe("C_Login", start, err)
	if err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		_ = m.p.CloseSession(ls)
		if IsPINError(err) {
			return nil, fmt.Errorf("hsm: login to %s refused: %w", h.token(), err)
		}
		return nil, fmt.Errorf("hsm: login to %s: %w", h.token(), err)
	}
	caps, err := readCapabilities(m.p, slot)
	if err != nil {
		_ = m.p.CloseSession(ls)
		return nil, err
	}
	h.caps.Store(caps)
	size := h.cfg.PoolSize
	ti, tiErr := m.p.GetTokenInfo(slot)
	if tiErr == nil {
		lim := sessionCount(ti.MaxSessionCount)
		if size = poolSizeFor(lim, h.cfg.PoolSize); size < h.cfg.PoolSize {
			h.log.Warn("the token allows fewer sessions than the pool size; using fewer",
				"token", h.token(), "max_sessions", lim, "pool_size", h.cfg.PoolSize, "using", size)
		}
	}
	h.poolSize.Store(int64(size))
	b := &backend{m: m, p: m.p, slot: slot, login: ls}
	b.copies = h.copiesWanted(ti, tiErr)
	b.pool = newPool(h, b, size)
	return b, nil
}

// findSlot finds the slot of the token: the first one whose token has the
// label, or the configured slot.
func (h *HSM) findSlot(p *pkcs11.Ctx) (uint, error) {
	if h.cfg.TokenLabel == "" {
		return *h.cfg.Slot, nil
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("hsm: list slots of %s: %w", h.cfg.Module, err)
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err == nil && trimLabel(ti.Label) == h.cfg.TokenLabel {
			return s, nil
		}
	}
	return 0, fmt.Errorf("hsm: no initialised %s is visible through %s (check the label with `hsmca slot list`; for SoftHSM2, the daemon and the tools must share SOFTHSM2_CONF)",
		h.token(), h.cfg.Module)
}

// openError words a module that cannot be loaded or initialised.
func (h *HSM) openError(err error) error { return err }

// closeBackend waits for the calls using b, then closes its sessions and
// drops its use of the module. A call still stuck in the module after
// drainWait (a token that stopped answering) keeps b as it is: its
// sessions stay open and the module is not finalised under it, until the
// last such call returns; then b is closed as usual. Until then the
// module has one more user than the handles that use it, so a rebuild
// cannot re-initialise it (which is what reconnects a module behind a
// socket); once b lets go, the next attempt can.
func (h *HSM) closeBackend(b *backend) {
	b.mu.Lock()
	b.closing = true
	b.mu.Unlock()
	drained := make(chan struct{})
	go func() { b.inflight.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainWait):
		h.log.Warn("PKCS#11 calls still unanswered; leaving their sessions and the module as they are until they return",
			"token", h.token(), "waited", drainWait.String())
		go func() {
			<-drained
			h.log.Info("the unanswered PKCS#11 calls returned; closing their sessions", "token", h.token())
			h.releaseBackend(b)
		}()
		return
	}
	h.releaseBackend(b)
}

// releaseBackend closes b's sessions and drops its use of the module; no
// call may be running on b.
func (h *HSM) releaseBackend(b *backend) {
	b.m.lockCalls()
	b.pool.closeIdle()
	_ = b.p.CloseSession(b.login)
	b.m.unlockCalls()
	libMu.Lock()
	defer libMu.Unlock()
	b.m.release()
}

// Close closes the token handle. Signers obtained from it stop working.
func (h *HSM) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	close(h.stop)
	b, done := h.b, h.rebuilding
	h.b = nil
	h.mu.Unlock()
	if done != nil {
		<-done
	}
	h.brk.wait()
	if b != nil {
		h.closeBackend(b)
	}
	return nil
}

// acquire returns the current backend, or an error wrapping ErrUnavailable
// while there is none or the circuit is open.
func (h *HSM) acquire(ctx context.Context) (*backend, error) {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if err := h.brk.allow(); err != nil {
		return nil, err
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return nil, errClosed
	}
	if h.b == nil {
		return nil, fmt.Errorf("%w: %w%w", ErrUnavailable, h.down, notSentMark)
	}
	return h.b, nil
}

// Ready says, without a call to the token, whether calls can be sent to
// it now: nil, or an error wrapping ErrUnavailable while it reconnects or
// the circuit is open. Callers use it to refuse work early, before they
// write anything.
func (h *HSM) Ready() error {
	_, err := h.acquire(nil)
	return err
}

// current is the backend in service, nil while down.
func (h *HSM) current() *backend {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.b
}

// done is kept for symmetry with acquire; sessions are counted by the pool.
func (b *backend) done() {}

// Sessions reports the effective size of the session pool and how many
// sessions operations hold right now, for the session-pool gauges.
func (h *HSM) Sessions() (poolSize int, inUse int64) {
	return int(h.poolSize.Load()), h.busy.Load()
}

// check wraps an error from an operation on b. A session-level fault takes
// b out of service (starting a rebuild) and the error wraps ErrUnavailable
// as well as the PKCS#11 code.
func (h *HSM) check(b *backend, op string, err error) error {
	if err == nil {
		return nil
	}
	var de *deadlineError
	if errors.As(err, &de) || errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("hsm: %s: %w", op, err)
	}
	if isSessionFault(err) {
		h.takeDown(b, err)
		return fmt.Errorf("hsm: %s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("hsm: %s: %w", op, err)
}

// takeDown starts a rebuild if b is still the current backend.
func (h *HSM) takeDown(b *backend, cause error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.b != b {
		return
	}
	h.b = nil
	h.down = fmt.Errorf("reconnecting to %s after %s", h.token(), ErrorCode(cause))
	delay := firstRetry
	if time.Since(h.upSince) < stableAfter && h.retry > 0 {
		delay = min(2*h.retry, maxRetry)
	}
	h.retry = delay
	done := make(chan struct{})
	h.rebuilding = done
	h.log.Warn("HSM session fault; opening new sessions and logging in again", "token", h.token(), "code", ErrorCode(cause), "retry_in", delay.String())
	go h.rebuild(b, delay, done)
}

// rebuild closes the failed backend and opens a new one, one login per
// attempt, doubling the delay between attempts. A refused PIN ends it.
func (h *HSM) rebuild(old *backend, delay time.Duration, done chan struct{}) {
	defer close(done)
	h.closeBackend(old)
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(delay)
		select {
		case <-h.stop:
			t.Stop()
			return
		case <-t.C:
		}
		b, err := h.openBackendReinit(true)
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			if b != nil {
				h.closeBackend(b)
			}
			return
		}
		switch {
		case err == nil:
			h.lastGen++
			b.gen = h.lastGen
			h.b, h.down, h.upSince = b, nil, time.Now()
			h.mu.Unlock()
			h.brk.reset()
			h.log.Info("HSM sessions reopened", "token", h.token(), "attempts", attempt)
			// A key creation the fault cut short may have left an empty
			// shell (see SweepRemnants); creations of this process wait
			// for keyMu, so none is half-way now.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if n, err := h.SweepRemnants(ctx); err != nil {
				h.log.Warn("could not sweep empty objects after the rebuild", "err", err)
			} else if n > 0 {
				h.log.Info("destroyed empty objects a cut-short key creation left", "objects", n)
			}
			cancel()
			return
		case IsPINError(err):
			h.down = fmt.Errorf("login refused while reconnecting; not retrying, as repeated bad PINs lock the token: %w", err)
			h.mu.Unlock()
			h.log.Error("HSM login refused during rebuild; giving up until restart", "token", h.token(), "err", err)
			return
		default:
			h.down = fmt.Errorf("reconnecting to %s: attempt %d failed: %w", h.token(), attempt, err)
			delay = min(2*delay, maxRetry)
			h.retry = delay
			h.mu.Unlock()
			h.log.Warn("HSM rebuild attempt failed", "token", h.token(), "attempt", attempt, "err", err, "retry_in", delay.String())
		}
	}
}

func (h *HSM) observe(fn string, start time.Time, err error) {
	if h.cfg.Observer != nil {
		h.cfg.Observer(fn, time.Since(start), err)
	}
}

// Health probes the token with one cheap call on a session and checks the
// session is logged in. While a rebuild runs, or the circuit is open, it
// returns an error wrapping ErrUnavailable that says why.
func (h *HSM) Health(ctx context.Context) error {
	b, err := h.acquire(ctx)
	if err != nil {
		return err
	}
	return h.check(b, "health probe of "+h.token(), h.loggedIn(ctx, b))
}

// loggedIn checks on a work session that the token still has this
// application logged in. A token that dropped our sessions and login does
// not always say so: on fresh sessions private objects are simply
// invisible (CKR_OBJECT_HANDLE_INVALID, empty searches). So "not found"
// answers are confirmed with this probe.
func (h *HSM) loggedIn(ctx context.Context, b *backend) error {
	return b.run(ctx, h.cfg.CallTimeout, "C_GetSessionInfo", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		info, err := p.GetSessionInfo(s)
		if err != nil {
			return err
		}
		if info.State != pkcs11.CKS_RW_USER_FUNCTIONS && info.State != pkcs11.CKS_RO_USER_FUNCTIONS {
			return fmt.Errorf("session is not logged in (state %d): %w", info.State, pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN))
		}
		return nil
	})
}

// confirmAbsent returns notFound if the token still has us logged in, and
// an ErrUnavailable error (starting a rebuild) if it does not.
func (h *HSM) confirmAbsent(ctx context.Context, b *backend, op string, notFound error) error {
	if err := h.loggedIn(ctx, b); err != nil {
		return h.check(b, op, err)
	}
	return notFound
}

// isHandleInvalid reports a stale object handle.
func isHandleInvalid(err error) bool {
	c, ok := returnCode(err)
	return ok && (c == pkcs11.CKR_KEY_HANDLE_INVALID || c == pkcs11.CKR_OBJECT_HANDLE_INVALID)
}

// TokenInfo describes the open token.
type TokenInfo struct {
	SlotID       uint
	Label        string
	Manufacturer string
	Model        string
	Serial       string
	// Sessions is the number of sessions open on the token (all
	// applications), -1 if the token does not say.
	Sessions int
	// MaxSessions is the token's session limit: 0 for none, -1 if the
	// token does not say.
	MaxSessions int
	// FreeSessions is MaxSessions-Sessions when both are known and there
	// is a limit, else -1.
	FreeSessions int
	// PoolSize is the effective size of our session pool.
	PoolSize int
	// SessionCopies: keys sign through session copies (copies.go).
	SessionCopies bool
}

// poolSizeFor is the pool size for a token allowing limit sessions (0: no
// limit, -1: unknown): the login session counts against the limit, and
// the pool keeps at least one session.
func poolSizeFor(limit, configured int) int {
	if limit > 0 && limit-1 < configured {
		return max(limit-1, 1)
	}
	return configured
}

// trimLabel drops the padding of a 32-byte PKCS#11 label.
func trimLabel(l string) string { return strings.TrimRight(l, " \x00") }

// sessionCount reads a session count of CK_TOKEN_INFO: -1 when the token
// does not say. opencryptoki reports ^0-1 for "no limit" (a 32-bit value
// widened); any count past 2^31 is taken as no limit (0).
func sessionCount(v uint) int {
	switch {
	case v == pkcs11.CK_UNAVAILABLE_INFORMATION:
		return -1
	case uint64(v) >= 1<<31:
		return 0
	}
	return int(v)
}

// TokenInfo reads the token's description and session counts.
func (h *HSM) TokenInfo(ctx context.Context) (TokenInfo, error) {
	b, err := h.acquire(ctx)
	if err != nil {
		return TokenInfo{}, err
	}
	var ti pkcs11.TokenInfo
	err = b.run(ctx, h.cfg.CallTimeout, "C_GetTokenInfo", func(p *pkcs11.Ctx, _ pkcs11.SessionHandle) (err error) {
		ti, err = p.GetTokenInfo(b.slot)
		return err
	})
	if err != nil {
		return TokenInfo{}, h.check(b, "token info", err)
	}
	out := TokenInfo{
		SlotID: b.slot, Label: ti.Label, Manufacturer: ti.ManufacturerID, Model: ti.Model, Serial: ti.SerialNumber,
		Sessions: sessionCount(ti.SessionCount), MaxSessions: sessionCount(ti.MaxSessionCount),
		FreeSessions: -1, PoolSize: int(h.poolSize.Load()), SessionCopies: b.copies,
	}
	if out.Sessions >= 0 && out.MaxSessions > 0 {
		out.FreeSessions = max(out.MaxSessions-out.Sessions, 0)
	}
	return out, nil
}

// Capabilities is what the token can do, as read when it was last opened.
func (h *HSM) Capabilities() *Capabilities { return h.caps.Load() }

// Supports says whether keys of alg can be generated, imported and used
// on this token: nil, or an error wrapping ErrUnsupported naming what is
// missing.
func (h *HSM) Supports(alg Algorithm) error { return h.caps.Load().Algorithm(alg) }

// SupportsFeature is Supports for the Feature* operations.
func (h *HSM) SupportsFeature(feature string) error { return h.caps.Load().Feature(feature) }
