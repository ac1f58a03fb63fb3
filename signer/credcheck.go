package signer

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hsmca/hsmca/store"
)

// An API token's check is a store round trip (the token's record and its
// rate-limit count, GetByUniqueThrottled): on Redis, 40 µs or more of a
// request that takes a few hundred. A token this process checked lately
// and found valid and under its limit (knownTokens) may have that check
// run beside the request's work (AuthenticateTokenAhead): the work goes as
// far as its first write (reads and HSM signatures) while the check is on
// its way, and everything that writes or answers waits for the check
// first (AwaitCredential; the API's answer, Op.Done and Op.DoneIf, every
// write of the engine's store). A check that refuses (the token revoked
// or expired meanwhile, through any replica, or over its rate limit)
// discards the work: nothing is written, and the answer is the one the
// check alone would have given.
//
// What this spends on a refused credential is bounded: a token runs at
// most one such request at a time (the others are checked first, as
// usual), and the refusal drops it from knownTokens, so that its next
// request is checked first too.
//
// On a store that takes credential guards (store.CredentialGuards: Redis
// standalone and Sentinel) the check need not be a round trip of its own:
// a request whose first write is its event record (a signature: Op.Done,
// Op.DoneIf) or a Create (an issued certificate: observedStore.Create)
// carries the check in that write (AuthenticateTokenCarried), as a guard
// on the token's record at the version last checked and a count against
// its rate limit, made in the same script (a deferred check: no
// goroutine, nothing sent ahead). The write is made only if the token is
// unchanged and under its limit; otherwise nothing is written and the
// check runs as usual, its answer deciding between the refusal and the
// write made again without it. Anything else that
// waits for the check first (another write, the answer) runs it then.
// A token's record changes when it is revoked, its roles or expiry
// change, or its last use is recorded (once a minute): the next carried
// check then fails and the full check reads it afresh. A token not
// checked in full for knownTokenFresh is checked beside its work instead
// (the full check also records its last use).

// knownTokenFresh is how long after its last full check a token's check
// may be carried by its request's event record (deferred).
const knownTokenFresh = 30 * time.Second

// maxKnownTokens bounds knownTokens: past it a token checked afresh
// replaces one at random (it is only checked first again).
const maxKnownTokens = 4096

// knownTokens are the tokens this process found valid and under their
// rate limit at their last check, by the hash of the secret.
type knownTokens struct {
	mu sync.Mutex
	m  map[string]*knownToken
}

type knownToken struct {
	tok Token
	// ver is the version of the token's record at its last full check,
	// checked (unix nanoseconds) its time.
	ver     atomic.Uint64
	checked atomic.Int64
	// busy: a request of this token runs beside its check now.
	busy atomic.Bool
}

func (k *knownTokens) get(hash string) *knownToken {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[hash]
}

func (k *knownTokens) put(hash string, tok *Token, ver uint64, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if kt, ok := k.m[hash]; ok && sameToken(&kt.tok, tok) {
		kt.ver.Store(ver)
		kt.checked.Store(now.UnixNano())
		return
	}
	// A token not known, or whose record says other than what is known
	// (its roles or expiry changed): a new entry, never the old one
	// changed under the requests that copied it.
	if k.m == nil {
		k.m = map[string]*knownToken{}
	}
	if len(k.m) >= maxKnownTokens {
		for h := range k.m {
			delete(k.m, h)
			break
		}
	}
	t := *tok
	t.Roles = append([]string(nil), tok.Roles...)
	t.LastUsed = nil
	kt := &knownToken{tok: t}
	kt.ver.Store(ver)
	kt.checked.Store(now.UnixNano())
	k.m[hash] = kt
}

// sameToken reports whether b is the token known as a: the same token,
// tenant, client, roles and expiry.
func sameToken(a, b *Token) bool {
	return a.ID == b.ID && a.Tenant == b.Tenant && a.Client == b.Client && slices.Equal(a.Roles, b.Roles) &&
		(a.ExpiresAt == nil) == (b.ExpiresAt == nil) && (a.ExpiresAt == nil || a.ExpiresAt.Equal(*b.ExpiresAt))
}

// forget drops kt, if it is still the entry of hash.
func (k *knownTokens) forget(hash string, kt *knownToken) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m[hash] == kt {
		delete(k.m, hash)
	}
}

// clear drops every entry: a token was revoked through this process.
func (k *knownTokens) clear() {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.m)
}

// CredentialCheck is a token's check running beside its request's work
// (AuthenticateTokenAhead), or deferred: made by the request's first
// write (carried in it), or when something waits for it first. Wait
// returns its outcome.
type CredentialCheck struct {
	done  chan struct{}
	err   error
	limit RateLimitAnswer

	// A deferred check: e is set, and once runs the check (now) or
	// settles it as confirmed by a write that carried it (carried).
	e    *Core
	ctx  context.Context
	hash string
	kt   *knownToken
	ver  uint64
	req  *store.ThrottleRequest
	once sync.Once
}

// Wait waits for the check and returns what the check alone would have
// answered: err for a credential refused (unauthenticated) or a store
// that did not answer, else the rate limiter's answer (a Wait over 0
// refuses the request; Err: the limiter did not answer, the request is
// admitted). A deferred check not settled yet runs now.
func (p *CredentialCheck) Wait() (RateLimitAnswer, error) {
	if p.e != nil {
		p.once.Do(p.now)
	}
	<-p.done
	return p.limit, p.err
}

// now runs a deferred check.
func (p *CredentialCheck) now() {
	p.e.checkAhead(p.ctx, p.hash, p.kt, p.req, p)
}

// guard is what a write carries of a deferred check not settled
// yet: a guard on the token's record at the version last checked, with
// its count against the rate limit; nil otherwise. A Wait racing with
// the write may count the request twice against its limit, never less
// than once.
func (p *CredentialCheck) guard() *store.Guard {
	if p == nil || p.e == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	g := &store.Guard{Tenant: store.PlatformTenant, Kind: kindToken, ID: p.kt.tok.ID, Version: p.ver}
	if p.req != nil {
		r := *p.req
		r.Key = throttleKeyOf(p.hash)
		g.Throttle = &r
	}
	return g
}

// carried settles a deferred check as confirmed: a write that carried
// its guard was made.
func (p *CredentialCheck) carried() {
	p.once.Do(func() {
		p.e.metrics.CredentialChecksAhead.WithLabelValues("carried").Inc()
		p.kt.busy.Store(false)
		close(p.done)
	})
}

// refusal is the engine's error for work whose credential's check
// refused it: the work stops before its first write.
func (p *CredentialCheck) refusal() error {
	limit, err := p.Wait()
	if err != nil {
		return err
	}
	if limit.Err == nil && limit.Wait > 0 {
		return &Error{Kind: KindUnavailable, Msg: "rate limit exceeded for this credential", RetryAfter: limit.Wait}
	}
	return nil
}

// AwaitCredential waits for the check of the credential of ctx's caller
// when it runs beside the request (Caller.Check), and returns its
// refusal, or nil. Without such a check it returns nil at once.
func AwaitCredential(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	if p := CallerFrom(ctx).Check; p != nil {
		return p.refusal()
	}
	return nil
}

// AuthenticateTokenAhead is AuthenticateTokenThrottled (rate 0: not
// counted, AuthenticateToken) for a request whose work can run beside the
// check. For a token this process found valid and under its limit at its
// last check, with no other request of it running so, it returns the
// token as then and the check under way, or deferred (put it in the
// caller: Caller.Check; ctx must not carry it, it is the check's own).
// Otherwise it checks at once, as AuthenticateTokenThrottled does, and
// the check is nil.
func (e *Core) AuthenticateTokenAhead(ctx context.Context, secret string, rate float64, burst int64) (*Token, *CredentialCheck, RateLimitAnswer, error) {
	return e.authenticateAhead(ctx, secret, rate, burst, false)
}

// AuthenticateTokenCarried is AuthenticateTokenAhead for a request whose
// first write is its operation's event record (a signature: Op.Done,
// Op.DoneIf) or a Create: on a store that takes credential guards the
// check is deferred, to go with that write, instead of running beside the
// work. A request whose first write is another would wait for the whole
// check there instead of overlapping it: use AuthenticateTokenAhead.
func (e *Core) AuthenticateTokenCarried(ctx context.Context, secret string, rate float64, burst int64) (*Token, *CredentialCheck, RateLimitAnswer, error) {
	return e.authenticateAhead(ctx, secret, rate, burst, true)
}

func (e *Core) authenticateAhead(ctx context.Context, secret string, rate float64, burst int64, carry bool) (*Token, *CredentialCheck, RateLimitAnswer, error) {
	var limit *store.ThrottleRequest
	if rate > 0 {
		limit = &store.ThrottleRequest{Rate: rate, Burst: burst}
	}
	if !tokenForm(secret) {
		return nil, nil, RateLimitAnswer{}, tokenDenied()
	}
	h := hashToken(secret)
	kt := e.knownTokens.get(h)
	if kt != nil && e.aheadUsable(kt) && kt.busy.CompareAndSwap(false, true) {
		p := &CredentialCheck{done: make(chan struct{})}
		tok := kt.tok
		if carry && e.credentialGuards && e.knownFresh(kt) {
			p.e, p.ctx, p.hash, p.kt, p.ver, p.req = e, ctx, h, kt, kt.ver.Load(), limit
			return &tok, p, RateLimitAnswer{}, nil
		}
		go e.checkAhead(ctx, h, kt, limit, p)
		// Let the check send its request now: on one processor (the
		// daemon's idle_one_proc) it would otherwise wait in the run
		// queue behind the HSM call, which holds the processor for its
		// length, and overlap nothing.
		runtime.Gosched()
		return &tok, p, RateLimitAnswer{}, nil
	}
	tok, tr, err := e.authenticateKnownHash(ctx, h, limit)
	return tok, nil, tr, err
}

// knownFresh reports whether kt's token was checked in full within
// knownTokenFresh: its next checks may be guards on its record at the
// version then.
func (e *Core) knownFresh(kt *knownToken) bool {
	return e.now().UnixNano()-kt.checked.Load() < int64(knownTokenFresh)
}

// checkKnown checks a token this process checked in full lately
// (knownFresh; kt may be nil) with a guard alone: its record still at
// the version then and, with limit, one request counted against its rate
// limit, in one step that sends and reads no record. ok: the token as
// then, admitted. Otherwise (a record that changed, a limit that refuses,
// a store that did not answer) nothing was counted, and the full check
// decides.
func (e *Core) checkKnown(ctx context.Context, hash string, kt *knownToken, limit *store.ThrottleRequest) (*Token, bool) {
	if !e.guardChecks || kt == nil || !e.aheadUsable(kt) || !e.knownFresh(kt) {
		return nil, false
	}
	gc, ok := e.store.(store.GuardChecker)
	if !ok {
		return nil, false
	}
	g := &store.Guard{Tenant: store.PlatformTenant, Kind: kindToken, ID: kt.tok.ID, Version: kt.ver.Load()}
	if limit != nil {
		r := *limit
		r.Key = throttleKeyOf(hash)
		g.Throttle = &r
	}
	held, err := gc.CheckGuard(ctx, store.PlatformTenant, g)
	if err != nil || !held {
		e.metrics.CredentialGuardChecks.WithLabelValues("failed").Inc()
		return nil, false
	}
	e.metrics.CredentialGuardChecks.WithLabelValues("held").Inc()
	tok := kt.tok
	return &tok, true
}

// aheadUsable reports whether kt's token may still be used before its
// check: not past its expiry.
func (e *Core) aheadUsable(kt *knownToken) bool {
	return kt.tok.ExpiresAt == nil || e.now().Before(*kt.tok.ExpiresAt)
}

// checkAhead runs the check of a request that runs beside it.
func (e *Core) checkAhead(ctx context.Context, hash string, kt *knownToken, limit *store.ThrottleRequest, p *CredentialCheck) {
	defer close(p.done)
	defer kt.busy.Store(false)
	tok, tr, ver, err := e.authenticateHash(ctx, hash, limit)
	outcome := "confirmed"
	switch {
	case err != nil:
		outcome = "refused"
	case tok.ID != kt.tok.ID || tok.Tenant != kt.tok.Tenant || !slices.Equal(tok.Roles, kt.tok.Roles):
		// Not the token known under this hash any more: the request
		// ran as a caller the store no longer holds.
		err = &Error{Kind: KindUnauthenticated, Msg: "invalid or expired token"}
		outcome = "refused"
	case tr.Err == nil && tr.Wait > 0:
		outcome = "throttled"
	}
	if outcome != "confirmed" {
		e.knownTokens.forget(hash, kt)
	} else {
		kt.ver.Store(ver)
		kt.checked.Store(e.now().UnixNano())
	}
	e.metrics.CredentialChecksAhead.WithLabelValues(outcome).Inc()
	p.err, p.limit = err, tr
}

// forgetKnownTokens drops what this process knows of valid tokens: a
// token was revoked through it.
func (e *Core) forgetKnownTokens() { e.knownTokens.clear() }

// knownTokenFor is the known entry of a secret (tests).
func (e *Core) knownTokenFor(secret string) (*Token, bool) {
	kt := e.knownTokens.get(hashToken(secret))
	if kt == nil {
		return nil, false
	}
	t := kt.tok
	return &t, true
}
