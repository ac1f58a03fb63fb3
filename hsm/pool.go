package hsm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
)

// pool hands out the work sessions of one backend. A permit is the right
// to hold one session (idle or in use); there are as many as the
// effective pool size, one fewer each time the token refuses a session.
type pool struct {
	h       *HSM
	b       *backend
	permits chan struct{}
	idle    chan pkcs11.SessionHandle
}

func newPool(h *HSM, b *backend, size int) *pool {
	p := &pool{h: h, b: b, permits: make(chan struct{}, size), idle: make(chan pkcs11.SessionHandle, size)}
	for range size {
		p.permits <- struct{}{}
	}
	return p
}

// errShrunk: the token refused a new session and the pool gave up the
// permit; the caller waits for another.
var errShrunk = errors.New("session refused: pool shrunk")

// openSession opens a work session. Tests replace it to play a token with
// a session limit, which SoftHSM2 does not have.
var openSession = func(p *pkcs11.Ctx, slot uint) (pkcs11.SessionHandle, error) {
	return p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
}

// take returns an idle session or opens one. The caller holds a permit.
func (p *pool) take() (pkcs11.SessionHandle, error) {
	select {
	case s := <-p.idle:
		return s, nil
	default:
	}
	s, err := openSession(p.b.p, p.b.slot)
	if err == nil {
		return s, nil
	}
	if c, ok := returnCode(err); ok && c == pkcs11.CKR_SESSION_COUNT && p.shrink() {
		return 0, errShrunk
	}
	return 0, err
}

// shrink gives up the caller's permit for good, unless it is the last.
func (p *pool) shrink() bool {
	for {
		n := p.h.poolSize.Load()
		if n <= 1 {
			return false
		}
		if p.h.poolSize.CompareAndSwap(n, n-1) {
			p.h.log.Warn("the token refused another session (CKR_SESSION_COUNT); the session pool shrinks",
				"token", p.h.token(), "pool_size", n-1)
			return true
		}
	}
}

// put keeps s for the next call, or closes it when the call may have left
// it unusable or was abandoned past its deadline.
func (p *pool) put(s pkcs11.SessionHandle, err error, retire bool) {
	var left operationLeft
	if retire || isSessionFault(err) || isOperationActive(err) || errors.As(err, &left) {
		_ = p.b.p.CloseSession(s)
		return
	}
	select {
	case p.idle <- s:
	default:
		_ = p.b.p.CloseSession(s)
	}
}

// closeIdle closes the idle sessions (the backend is being closed).
func (p *pool) closeIdle() {
	for {
		select {
		case s := <-p.idle:
			_ = p.b.p.CloseSession(s)
		default:
			return
		}
	}
}

// operationLeft wraps the error of a call after which an operation may
// still be active on its session. PKCS#11 says a failed C_Sign ends its
// operation, but modules do not all do so (SoftHSM2 keeps it after some
// argument errors), and there is no portable way to cancel one. The
// session is closed and the error inside returned.
type operationLeft struct{ err error }

func (e operationLeft) Error() string { return e.err.Error() }
func (e operationLeft) Unwrap() error { return e.err }

// deadlineError is a call that got no answer, or no session, in time. It
// wraps ErrUnavailable: the caller answers 503.
type deadlineError struct {
	what  string
	after time.Duration
	// notSent: the call never started (no free session in time).
	notSent bool
}

func (e *deadlineError) Error() string {
	return fmt.Sprintf("%s: %s within %s", ErrUnavailable, e.what, e.after)
}

func (e *deadlineError) Is(target error) bool {
	return target == ErrUnavailable || (e.notSent && target == errNotSent)
}

// run runs f on a session of b under a deadline: timeout for the calls,
// PoolWaitTimeout for a free session, both cut short by ctx. f runs in a
// goroutine of its own, so that a call stuck in the module does not hold
// the caller: past the deadline run returns a *deadlineError at once, the
// circuit breaker counts the stall, and the session is closed whenever
// the call returns. A session that answers CKR_OPERATION_ACTIVE was left
// with an operation by something else in the process: it is closed and f
// runs once more on a new one (the failed call did nothing). fn names the
// operation for the observer.
func (b *backend) run(ctx context.Context, timeout time.Duration, fn string, f func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error) error {
	h := b.pool.h
	if ctx == nil {
		ctx = context.Background()
	}
	start := time.Now()
	err := b.runOnce(ctx, timeout, f)
	if fn != "" {
		h.observe(fn, start, err)
	}
	return err
}

func (b *backend) runOnce(ctx context.Context, timeout time.Duration, f func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error) error {
	h := b.pool.h
	var wait *time.Timer // made only when no session is free at once
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	for {
		select {
		case <-b.pool.permits:
		default:
			if wait == nil {
				wait = time.NewTimer(h.cfg.PoolWaitTimeout)
			}
			select {
			case <-b.pool.permits:
			case <-wait.C:
				return &deadlineError{what: "no free session", after: h.cfg.PoolWaitTimeout, notSent: true}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if !b.enter() {
			// The backend is being closed (a reconnect, Close): the module
			// may be finalised under any call that starts now.
			b.pool.permits <- struct{}{}
			return fmt.Errorf("%w: the sessions of %s are being closed%w", ErrUnavailable, h.token(), notSentMark)
		}
		h.busy.Add(1)
		res := make(chan error, 1)
		w := &work{b: b, f: f, res: res}
		go w.do()
		call := time.NewTimer(timeout)
		select {
		case err := <-res:
			call.Stop()
			if err == errShrunk {
				continue
			}
			h.brk.answered()
			return err
		case <-call.C:
			w.abandoned.Store(true)
			h.brk.stalled()
			return &deadlineError{what: "no answer from " + h.token(), after: timeout}
		case <-ctx.Done():
			call.Stop()
			w.abandoned.Store(true)
			return &callAbandoned{err: ctx.Err()}
		}
	}
}

// callAbandoned is a call whose caller's context ended while the call ran:
// the call goes on in the token (see StillRunning). It reads and unwraps as
// the context's error.
type callAbandoned struct{ err error }

func (e *callAbandoned) Error() string { return e.err.Error() }
func (e *callAbandoned) Unwrap() error { return e.err }

// work is one call on a session, run by a goroutine of its own.
type work struct {
	b         *backend
	f         func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error
	res       chan error
	abandoned atomic.Bool
}

func (w *work) do() {
	b := w.b
	defer b.inflight.Done()
	b.m.lockCalls()
	s, err := b.pool.take()
	if err == errShrunk {
		b.m.unlockCalls()
		b.pool.h.busy.Add(-1) // the permit is gone for good
		w.res <- err
		return
	}
	if err == nil {
		err = w.f(b.p, s)
		if isOperationActive(err) && !w.abandoned.Load() {
			_ = b.p.CloseSession(s)
			if s, err = b.p.OpenSession(b.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION); err == nil {
				err = w.f(b.p, s)
				b.pool.put(s, err, w.abandoned.Load())
			}
		} else {
			b.pool.put(s, err, w.abandoned.Load())
		}
	}
	b.m.unlockCalls()
	b.pool.h.busy.Add(-1)
	b.pool.permits <- struct{}{}
	var left operationLeft
	if errors.As(err, &left) {
		err = left.err
	}
	w.res <- err
}

// breaker stops work going to a token whose calls keep passing their
// deadline: after BreakerThreshold stalls in a row it opens, every call
// fails at once with ErrUnavailable, and a probe asks the token every
// little while until it answers.
type breaker struct {
	h       *HSM
	stalls  atomic.Int64
	mu      sync.Mutex
	open    bool
	since   time.Time
	probing sync.WaitGroup
}

// BreakerOpen reports whether the circuit is open (for the breaker gauge).
func (h *HSM) BreakerOpen() bool {
	h.brk.mu.Lock()
	defer h.brk.mu.Unlock()
	return h.brk.open
}

func (k *breaker) allow() error {
	if k.stalls.Load() < int64(k.h.cfg.BreakerThreshold) {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.open {
		return nil
	}
	return fmt.Errorf("%w: %s stopped answering (%d calls in a row passed their %s deadline); circuit open since %s, probing%w",
		ErrUnavailable, k.h.token(), k.h.cfg.BreakerThreshold, k.h.cfg.CallTimeout, k.since.UTC().Format(time.RFC3339), notSentMark)
}

func (k *breaker) answered() {
	if k.stalls.Load() != 0 {
		k.stalls.Store(0)
	}
}

func (k *breaker) stalled() {
	if k.stalls.Add(1) < int64(k.h.cfg.BreakerThreshold) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.open {
		return
	}
	select {
	case <-k.h.stop:
		return
	default:
	}
	k.open, k.since = true, time.Now()
	k.h.log.Error("HSM calls keep passing their deadline; circuit open until the token answers a probe",
		"token", k.h.token(), "stalls", k.stalls.Load(), "deadline", k.h.cfg.CallTimeout.String())
	k.probing.Add(1)
	go k.probe()
}

// reset closes the circuit (a rebuilt backend starts afresh).
func (k *breaker) reset() {
	k.stalls.Store(0)
	k.mu.Lock()
	k.open = false
	k.mu.Unlock()
}

func (k *breaker) wait() { k.probing.Wait() }

// probe asks the token for its session state until it answers.
func (k *breaker) probe() {
	defer k.probing.Done()
	h := k.h
	delay := 250 * time.Millisecond
	for {
		t := time.NewTimer(delay)
		select {
		case <-h.stop:
			t.Stop()
			return
		case <-t.C:
		}
		k.mu.Lock()
		open := k.open
		k.mu.Unlock()
		if !open {
			return
		}
		if b := h.current(); b != nil {
			err := h.loggedIn(context.Background(), b)
			var de *deadlineError
			if !errors.As(err, &de) {
				// An answer, even a bad one: the token is back. check
				// starts a rebuild if the answer is a session fault.
				k.mu.Lock()
				k.open = false
				since := k.since
				k.mu.Unlock()
				k.stalls.Store(0)
				h.log.Info("the HSM answers again; circuit closed", "token", h.token(), "open_for", time.Since(since).Round(time.Millisecond).String())
				if err != nil {
					_ = h.check(b, "probe", err)
				}
				return
			}
		}
		delay = min(2*delay, 5*time.Second)
	}
}
