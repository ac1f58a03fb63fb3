// Package hsm keeps hsmca's keys in a PKCS#11 token: generation, import,
// signing, AES-GCM wrapping and deletion, plus the slot and token chores the
// ops CLI needs. Keys are found by CKA_ID and never leave the token.
//
// Signing, generation of EC and RSA keys and AES-GCM go through crypto11;
// Ed25519, key import, attribute reads and the ops functions use
// miekg/pkcs11 directly, on the same loaded module.
//
// crypto11 v1 keeps handing out sessions that the token has dropped, so
// every error is classified: a session-level return code (session closed,
// device error, user not logged in ...) takes the HSM out of service and a
// background rebuild closes and re-opens the crypto11 context, logging in
// once per attempt with exponential backoff. Meanwhile every call fails
// fast with an error wrapping ErrUnavailable and Health says why. Signers
// handed out before the fault keep working afterwards: they find their key
// again by CKA_ID.
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

	"github.com/ThalesGroup/crypto11"
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
	// PoolSize is crypto11's MaxSessions; 0 means 16.
	PoolSize int
	// PoolWaitTimeout bounds the wait for a free session; 0 means 5s (it
	// never means "forever").
	PoolWaitTimeout time.Duration
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
	return fmt.Sprintf("hsm.Config{Module: %q, TokenLabel: %q, Slot: %s, PIN: [redacted], PoolSize: %d, PoolWaitTimeout: %s}",
		c.Module, c.TokenLabel, slot, c.PoolSize, c.PoolWaitTimeout)
}

// GoString keeps %#v from printing the PIN.
func (c Config) GoString() string { return c.String() }

// LogValue keeps slog from printing the PIN.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("module", c.Module), slog.String("token_label", c.TokenLabel),
		slog.Int("pool_size", c.PoolSize), slog.Duration("pool_wait_timeout", c.PoolWaitTimeout)}
	if c.Slot != nil {
		attrs = append(attrs, slog.Uint64("slot", uint64(*c.Slot)))
	}
	return slog.GroupValue(attrs...)
}

const (
	defaultPoolSize = 16
	defaultPoolWait = 5 * time.Second
	gcmNonceSize    = 12
	// idleRawSessions is how many of our own (non-crypto11) sessions are
	// kept open between calls; more are opened on demand.
	idleRawSessions = 4
	firstRetry      = 100 * time.Millisecond
	maxRetry        = 30 * time.Second
	// A context that stayed up this long starts its next rebuild with a
	// short delay again; one that fails sooner keeps doubling, so a token
	// that breaks right after each login is not logged into in a loop.
	stableAfter = time.Minute
)

// libMu serialises every change of the process-wide PKCS#11 library
// state: crypto11.Configure (which calls C_Initialize for the first
// context of a module), crypto11's Close (C_Finalize for the last one) and
// the ops functions that initialise the module on their own. Without it
// an ops call could finalise the library under a live context, or make
// crypto11's C_Initialize fail with CKR_CRYPTOKI_ALREADY_INITIALIZED.
var libMu sync.Mutex

// keyMu serialises object creation and destruction: SoftHSM2 mishandles
// concurrent key generation and import. It is process-wide because the
// library state is.
var keyMu sync.Mutex

// configure is crypto11.Configure; tests replace it to make a reconnect
// attempt fail, which a real token cannot be made to do on demand.
var configure = crypto11.Configure

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

	// busy counts PKCS#11 operations in progress, each holding a session.
	busy atomic.Int64
	// caps is the token's mechanism list, read at each (re)open.
	caps atomic.Pointer[Capabilities]

	cacheMu sync.Mutex
	signers map[string]*keySigner
	aeads   map[string]*gcmKey
}

// backend is one generation of open contexts: a crypto11 context and our
// own handle on the same module, with a few idle sessions of our own.
type backend struct {
	gen      uint64
	c11      *crypto11.Context
	raw      *pkcs11.Ctx
	slot     uint
	idle     chan pkcs11.SessionHandle
	inflight sync.WaitGroup
	busy     *atomic.Int64 // the HSM's count of operations in progress
}

var errClosed = fmt.Errorf("%w: the HSM handle is closed", ErrUnavailable)

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
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = defaultPoolSize
	}
	if cfg.PoolSize < 2 {
		// crypto11 keeps one session for the login and needs another to work.
		cfg.PoolSize = 2
	}
	if cfg.PoolWaitTimeout <= 0 {
		cfg.PoolWaitTimeout = defaultPoolWait
	}
	h := &HSM{
		cfg:     cfg,
		log:     cfg.Logger,
		stop:    make(chan struct{}),
		signers: map[string]*keySigner{},
		aeads:   map[string]*gcmKey{},
	}
	if h.log == nil {
		h.log = slog.Default()
	}
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

// openBackend configures crypto11 (one login) and opens our own handle.
func (h *HSM) openBackend() (*backend, error) {
	libMu.Lock()
	defer libMu.Unlock()
	c := &crypto11.Config{
		Path:            h.cfg.Module,
		Pin:             h.cfg.PIN,
		MaxSessions:     h.cfg.PoolSize,
		PoolWaitTimeout: h.cfg.PoolWaitTimeout,
		GCMIVLength:     gcmNonceSize,
	}
	if h.cfg.TokenLabel != "" {
		c.TokenLabel = h.cfg.TokenLabel
	} else {
		n := int(*h.cfg.Slot)
		c.SlotNumber = &n
	}
	start := time.Now()
	ctx, err := configure(c)
	h.observe("C_Login", start, err)
	if err != nil {
		return nil, h.openError(err)
	}
	raw := pkcs11.New(h.cfg.Module)
	if raw == nil {
		_ = ctx.Close()
		return nil, fmt.Errorf("hsm: cannot load PKCS#11 module %s a second time", h.cfg.Module)
	}
	// crypto11 has initialised the library; this handle shares that state
	// and must never finalise it.
	if err := raw.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		raw.Destroy()
		_ = ctx.Close()
		return nil, fmt.Errorf("hsm: initialise PKCS#11 module %s: %w", h.cfg.Module, err)
	}
	slot, err := h.findSlot(raw)
	if err != nil {
		raw.Destroy()
		_ = ctx.Close()
		return nil, err
	}
	caps, err := readCapabilities(raw, slot)
	if err != nil {
		raw.Destroy()
		_ = ctx.Close()
		return nil, err
	}
	h.caps.Store(caps)
	return &backend{c11: ctx, raw: raw, slot: slot, idle: make(chan pkcs11.SessionHandle, idleRawSessions), busy: &h.busy}, nil
}

// findSlot finds the slot crypto11 chose: the first one whose token has
// the label, as crypto11 walks them.
func (h *HSM) findSlot(raw *pkcs11.Ctx) (uint, error) {
	if h.cfg.TokenLabel == "" {
		return *h.cfg.Slot, nil
	}
	slots, err := raw.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("hsm: list slots: %w", err)
	}
	for _, s := range slots {
		ti, err := raw.GetTokenInfo(s)
		if err == nil && ti.Label == h.cfg.TokenLabel {
			return s, nil
		}
	}
	return 0, fmt.Errorf("hsm: %s vanished while opening it", h.token())
}

// openError turns crypto11's Configure errors into messages that say what
// to check. None of them carries the PIN.
func (h *HSM) openError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "could not find PKCS#11 token"):
		return fmt.Errorf("hsm: no initialised %s is visible through %s (check the label with `hsmca slot list`; for SoftHSM2, the daemon and the tools must share SOFTHSM2_CONF)",
			h.token(), h.cfg.Module)
	case strings.Contains(msg, "failed to open module"):
		return fmt.Errorf("hsm: cannot load PKCS#11 module %s", h.cfg.Module)
	case strings.Contains(msg, "failed to initialize module"):
		return fmt.Errorf("hsm: PKCS#11 module %s did not initialise (for SoftHSM2: does SOFTHSM2_CONF name a readable config whose token directory exists?): %w",
			h.cfg.Module, err)
	case IsPINError(err):
		return fmt.Errorf("hsm: login to %s refused: %w", h.token(), err)
	}
	return fmt.Errorf("hsm: open %s: %w", h.token(), err)
}

// closeBackend waits for the calls using b, then closes everything it holds.
func (h *HSM) closeBackend(b *backend) {
	b.inflight.Wait()
drain:
	for {
		select {
		case s := <-b.idle:
			_ = b.raw.CloseSession(s)
		default:
			break drain
		}
	}
	libMu.Lock()
	defer libMu.Unlock()
	_ = b.c11.Close()
	b.raw.Destroy()
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
	if b != nil {
		h.closeBackend(b)
	}
	return nil
}

// acquire returns the current backend, counted as in use until done is
// called, or an error wrapping ErrUnavailable while there is none.
func (h *HSM) acquire(ctx context.Context) (*backend, error) {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return nil, errClosed
	}
	if h.b == nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, h.down)
	}
	h.b.inflight.Add(1)
	h.busy.Add(1)
	return h.b, nil
}

func (b *backend) done() {
	if b.busy != nil {
		b.busy.Add(-1)
	}
	b.inflight.Done()
}

// Sessions reports the size of the session pool and how many sessions
// operations hold right now, for the session-pool gauges.
func (h *HSM) Sessions() (poolSize int, inUse int64) {
	return h.cfg.PoolSize, h.busy.Load()
}

// check wraps an error from an operation on b. A session-level fault takes
// b out of service (starting a rebuild) and the error wraps ErrUnavailable
// as well as the PKCS#11 code.
func (h *HSM) check(b *backend, op string, err error) error {
	if err == nil {
		return nil
	}
	if isSessionFault(err) {
		h.takeDown(b, err)
		return fmt.Errorf("hsm: %s: %w: %w", op, ErrUnavailable, err)
	}
	if isPoolTimeout(err) {
		return fmt.Errorf("hsm: %s: %w: no free session within %s: %w", op, ErrUnavailable, h.cfg.PoolWaitTimeout, err)
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
	h.log.Warn("HSM session fault; rebuilding the PKCS#11 context", "token", h.token(), "code", ErrorCode(cause), "retry_in", delay.String())
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
		b, err := h.openBackend()
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
			h.log.Info("HSM context rebuilt", "token", h.token(), "attempts", attempt)
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

// session takes one of our own sessions (logged in: login state is per
// token and application, and crypto11 holds it).
func (b *backend) session() (pkcs11.SessionHandle, error) {
	select {
	case s := <-b.idle:
		return s, nil
	default:
	}
	return b.raw.OpenSession(b.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
}

// release keeps s for a later call, or closes it if the idle set is full
// or the call may have left the session unusable: a session-level fault,
// or an operation that may still be active (see operationLeft). One
// operation left active makes every later call on the session fail with
// CKR_OPERATION_ACTIVE. Other failures leave a session as it was, and it
// is kept: closing it would also invalidate the handles of objects found
// on it that the module treats as session objects (SoftHSM2 does so with a
// shell a crash left without CKA_TOKEN).
func (b *backend) release(s pkcs11.SessionHandle, err error) {
	var left operationLeft
	if isSessionFault(err) || isOperationActive(err) || errors.As(err, &left) {
		_ = b.raw.CloseSession(s)
		return
	}
	select {
	case b.idle <- s:
	default:
		_ = b.raw.CloseSession(s)
	}
}

// operationLeft wraps the error of a call after which an operation may
// still be active on its session. PKCS#11 says a failed C_Sign ends its
// operation, but modules do not all do so (SoftHSM2 keeps it after some
// argument errors), and there is no portable way to cancel one. withSession
// closes the session and returns the error inside.
type operationLeft struct{ err error }

func (e operationLeft) Error() string { return e.err.Error() }
func (e operationLeft) Unwrap() error { return e.err }

// withSession runs f on one of our sessions. A session that answers
// CKR_OPERATION_ACTIVE was left with an operation by something else in the
// process (the module's sessions are shared by every user of the loaded
// library): it is closed and f runs once more on a new session. The call
// that answered CKR_OPERATION_ACTIVE did nothing, so f may run again.
func (b *backend) withSession(f func(s pkcs11.SessionHandle) error) error {
	s, err := b.session()
	if err != nil {
		return err
	}
	err = f(s)
	b.release(s, err)
	if isOperationActive(err) {
		if s, err = b.raw.OpenSession(b.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION); err != nil {
			return err
		}
		err = f(s)
		b.release(s, err)
	}
	var left operationLeft
	if errors.As(err, &left) {
		return left.err
	}
	return err
}

// Health probes the token with one cheap call on a session and checks the
// session is logged in. While a rebuild runs it returns an error wrapping
// ErrUnavailable that says why.
func (h *HSM) Health(ctx context.Context) error {
	b, err := h.acquire(ctx)
	if err != nil {
		return err
	}
	res := make(chan error, 1)
	go func() {
		defer b.done()
		res <- h.check(b, "health probe of "+h.token(), h.loggedIn(b))
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("hsm: health probe of %s: %w", h.token(), ctx.Err())
	}
}

// loggedIn checks with one of our sessions that the token still has this
// application logged in. A token that dropped our sessions and login does
// not always say so: crypto11 opens fresh sessions lazily, and on those
// private objects are simply invisible (CKR_OBJECT_HANDLE_INVALID, empty
// searches). So "not found" answers are confirmed with this probe.
func (h *HSM) loggedIn(b *backend) error {
	start := time.Now()
	err := b.withSession(func(s pkcs11.SessionHandle) error {
		info, err := b.raw.GetSessionInfo(s)
		if err != nil {
			return err
		}
		if info.State != pkcs11.CKS_RW_USER_FUNCTIONS && info.State != pkcs11.CKS_RO_USER_FUNCTIONS {
			return fmt.Errorf("session is not logged in (state %d): %w", info.State, pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN))
		}
		return nil
	})
	h.observe("C_GetSessionInfo", start, err)
	return err
}

// confirmAbsent returns notFound if the token still has us logged in, and
// an ErrUnavailable error (starting a rebuild) if it does not.
func (h *HSM) confirmAbsent(b *backend, op string, notFound error) error {
	if err := h.loggedIn(b); err != nil {
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
	// PoolSize is the size of our crypto11 session pool.
	PoolSize int
}

func sessionCount(v uint) int {
	if v == pkcs11.CK_UNAVAILABLE_INFORMATION {
		return -1
	}
	return int(v)
}

// TokenInfo reads the token's description and session counts.
func (h *HSM) TokenInfo(ctx context.Context) (TokenInfo, error) {
	b, err := h.acquire(ctx)
	if err != nil {
		return TokenInfo{}, err
	}
	defer b.done()
	start := time.Now()
	ti, err := b.raw.GetTokenInfo(b.slot)
	h.observe("C_GetTokenInfo", start, err)
	if err != nil {
		return TokenInfo{}, h.check(b, "token info", err)
	}
	out := TokenInfo{
		SlotID: b.slot, Label: ti.Label, Manufacturer: ti.ManufacturerID, Model: ti.Model, Serial: ti.SerialNumber,
		Sessions: sessionCount(ti.SessionCount), MaxSessions: sessionCount(ti.MaxSessionCount),
		FreeSessions: -1, PoolSize: h.cfg.PoolSize,
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
