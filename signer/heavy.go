package signer

import (
	"context"
	"crypto"
	"crypto/rsa"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/metrics"
)

// Heavy work. A few operations cost a hundred to several thousand times a
// signature with an EC key (docs/SECURITY.md has the table): a password
// export (PBKDF2, 600,000 rounds), an RSA key generated in software or in
// the HSM, a signature with an RSA key over 4096 bits. Each still counts
// as one request against the caller's rate limit, so a tenant well within
// its limit could keep every core busy and stretch everyone's latency. They
// run in a pool instead: at most Concurrency of them in the process, at
// most one per tenant, the waiting tenants served in turn (a tenant that
// just had its turn goes behind every other waiting tenant), at most
// TenantQueue waiting per tenant, none waiting longer than MaxWait or its
// request's deadline. What the pool refuses answers 503 with Retry-After
// in the family's envelope. Light operations never enter it, so they are
// never queued behind heavy ones.

// HeavyKind names a kind of heavy operation. The set is fixed: it is a
// metric label.
type HeavyKind string

const (
	// HeavyExportPassword derives the key of an encrypted PKCS#8 export.
	HeavyExportPassword HeavyKind = "export_password"
	// HeavySoftwareRSAKey generates an RSA leaf key in the daemon.
	HeavySoftwareRSAKey HeavyKind = "software_rsa_keygen"
	// HeavyHSMRSAKey generates an RSA key pair in the HSM.
	HeavyHSMRSAKey HeavyKind = "hsm_rsa_keygen"
	// HeavyLargeRSASign signs with an RSA key of more than 4096 bits (an
	// imported APIG key, through the keys API).
	HeavyLargeRSASign HeavyKind = "large_rsa_sign"
)

// HeavyKinds lists every HeavyKind.
var HeavyKinds = []HeavyKind{HeavyExportPassword, HeavySoftwareRSAKey, HeavyHSMRSAKey, HeavyLargeRSASign}

// Reasons the pool refuses an operation (the reason label of
// hsmca_heavy_operations_refused_total).
const (
	heavyQueueFull = "queue_full"
	heavyTimeout   = "timeout"
	heavyCanceled  = "canceled"
)

// HeavyWork configures the pool of heavy operations; zero values take the
// defaults.
type HeavyWork struct {
	// Concurrency is how many heavy operations run at once in the process.
	// Default max(1, GOMAXPROCS/2): half the cores stay for everything else.
	Concurrency int
	// TenantQueue is how many heavy operations of one tenant may wait while
	// one of its own runs; more are refused at once. Default 8.
	TenantQueue int
	// MaxWait bounds how long an operation waits for its turn (the
	// request's deadline bounds it too). Default 20 s, under the
	// listener's 30 s write timeout.
	MaxWait time.Duration
}

const (
	defaultHeavyTenantQueue = 8
	defaultHeavyMaxWait     = 20 * time.Second
	// heavyRetryAfter is what a refusal tells the client to wait.
	heavyRetryAfter = time.Second
	// largeRSABits: RSA keys above this many bits sign as heavy work.
	largeRSABits = 4096
)

func (w HeavyWork) withDefaults() HeavyWork {
	if w.Concurrency <= 0 {
		w.Concurrency = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if w.TenantQueue <= 0 {
		w.TenantQueue = defaultHeavyTenantQueue
	}
	if w.MaxWait <= 0 {
		w.MaxWait = defaultHeavyMaxWait
	}
	return w
}

// heavyPool admits heavy operations; see the comment at the top.
type heavyPool struct {
	cfg HeavyWork
	m   *metrics.Metrics

	mu      sync.Mutex
	running int
	active  map[string]bool           // tenants with an operation running
	queues  map[string][]*heavyWaiter // each tenant's waiters, oldest first
	order   []string                  // tenants with waiters, next turn first
	// Test hooks: hook is called with the slot held and its result when
	// the slot is given back; queued when an operation starts to wait.
	hook   func(HeavyKind, string) func()
	queued func(HeavyKind, string)
}

type heavyWaiter struct {
	kind    HeavyKind
	ready   chan struct{} // closed when granted
	granted bool
}

func newHeavyPool(cfg HeavyWork, m *metrics.Metrics) *heavyPool {
	p := &heavyPool{cfg: cfg.withDefaults(), m: m, active: map[string]bool{}, queues: map[string][]*heavyWaiter{}}
	for _, k := range HeavyKinds {
		m.HeavyInFlight.WithLabelValues(string(k))
		m.HeavyWaiting.WithLabelValues(string(k))
		m.HeavyWait.WithLabelValues(string(k))
		for _, r := range []string{heavyQueueFull, heavyTimeout, heavyCanceled} {
			m.HeavyRefused.WithLabelValues(string(k), r)
		}
	}
	return p
}

// acquire waits for tenant's turn to run a heavy operation of kind, and
// returns the function that gives the slot back.
func (p *heavyPool) acquire(ctx context.Context, tenant string, kind HeavyKind) (release func(), err error) {
	start := time.Now()
	p.mu.Lock()
	if p.running < p.cfg.Concurrency && !p.active[tenant] {
		// A free slot with nobody else entitled to it: every waiter of
		// another tenant is dispatched as soon as a slot frees, and this
		// tenant's own waiters would make it active.
		p.grantLocked(tenant)
		p.mu.Unlock()
		return p.admitted(tenant, kind, start), nil
	}
	if len(p.queues[tenant]) >= p.cfg.TenantQueue {
		p.mu.Unlock()
		return nil, p.refuse(kind, heavyQueueFull, nil)
	}
	w := &heavyWaiter{kind: kind, ready: make(chan struct{})}
	if len(p.queues[tenant]) == 0 {
		p.order = append(p.order, tenant)
	}
	p.queues[tenant] = append(p.queues[tenant], w)
	p.m.HeavyWaiting.WithLabelValues(string(kind)).Inc()
	p.mu.Unlock()
	if p.queued != nil {
		p.queued(kind, tenant)
	}

	timer := time.NewTimer(p.cfg.MaxWait)
	defer timer.Stop()
	reason := ""
	select {
	case <-w.ready:
		return p.admitted(tenant, kind, start), nil
	case <-ctx.Done():
		reason = heavyCanceled
	case <-timer.C:
		reason = heavyTimeout
	}
	p.mu.Lock()
	switch {
	case w.granted && reason == heavyTimeout:
		// The turn came as the wait ran out: take it.
		p.mu.Unlock()
		return p.admitted(tenant, kind, start), nil
	case w.granted:
		p.releaseLocked(tenant)
	default:
		p.dropLocked(tenant, w)
	}
	p.mu.Unlock()
	return nil, p.refuse(kind, reason, ctx.Err())
}

// admitted records an admission and makes its release.
func (p *heavyPool) admitted(tenant string, kind HeavyKind, start time.Time) func() {
	p.m.HeavyWait.WithLabelValues(string(kind)).Observe(time.Since(start).Seconds())
	p.m.HeavyInFlight.WithLabelValues(string(kind)).Inc()
	done := func() {}
	if p.hook != nil {
		done = p.hook(kind, tenant)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			done()
			p.m.HeavyInFlight.WithLabelValues(string(kind)).Dec()
			p.mu.Lock()
			p.releaseLocked(tenant)
			p.mu.Unlock()
		})
	}
}

func (p *heavyPool) refuse(kind HeavyKind, reason string, cause error) error {
	p.m.HeavyRefused.WithLabelValues(string(kind), reason).Inc()
	msg := "the daemon is busy with costly operations; retry later"
	if reason == heavyQueueFull {
		msg = "too many costly operations of this tenant are waiting; retry later"
	}
	return &Error{Kind: KindUnavailable, Msg: msg, Err: cause, RetryAfter: heavyRetryAfter}
}

func (p *heavyPool) grantLocked(tenant string) {
	p.running++
	p.active[tenant] = true
}

// releaseLocked gives a slot of tenant back and hands the free slots to
// the waiting tenants in turn.
func (p *heavyPool) releaseLocked(tenant string) {
	p.running--
	delete(p.active, tenant)
	for p.running < p.cfg.Concurrency {
		i := slices.IndexFunc(p.order, func(t string) bool { return !p.active[t] })
		if i < 0 {
			return
		}
		t := p.order[i]
		p.order = slices.Delete(p.order, i, i+1)
		q := p.queues[t]
		w := q[0]
		if q = q[1:]; len(q) > 0 {
			p.queues[t] = q
			p.order = append(p.order, t) // its next waiter goes behind the others
		} else {
			delete(p.queues, t)
		}
		p.grantLocked(t)
		p.m.HeavyWaiting.WithLabelValues(string(w.kind)).Dec()
		w.granted = true
		close(w.ready)
	}
}

// dropLocked removes a waiter that gave up.
func (p *heavyPool) dropLocked(tenant string, w *heavyWaiter) {
	p.m.HeavyWaiting.WithLabelValues(string(w.kind)).Dec()
	q := slices.DeleteFunc(p.queues[tenant], func(x *heavyWaiter) bool { return x == w })
	if len(q) > 0 {
		p.queues[tenant] = q
		return
	}
	delete(p.queues, tenant)
	p.order = slices.DeleteFunc(p.order, func(t string) bool { return t == tenant })
}

// Heavy waits for the turn of a heavy operation of kind for tenant; the
// caller runs it, then calls release exactly once. A refusal (the tenant's
// queue is full, or the wait too long) is KindUnavailable with RetryAfter.
func (e *Core) Heavy(ctx context.Context, tenant string, kind HeavyKind) (release func(), err error) {
	return e.heavyWork.acquire(ctx, heavyTenant(tenant), kind)
}

// heavyTenant is the pool's name for tenant: tenant-less work (platform
// principals) shares one name.
func heavyTenant(tenant string) string {
	if tenant == "" {
		return "_platform"
	}
	return tenant
}

// isRSAAlgorithm says whether alg makes an RSA key.
func isRSAAlgorithm(alg hsm.Algorithm) bool { return strings.HasPrefix(string(alg), "RSA") }

// largeRSA says whether pub is an RSA key that signs as heavy work.
func largeRSA(pub crypto.PublicKey) bool {
	k, ok := pub.(*rsa.PublicKey)
	return ok && k.N.BitLen() > largeRSABits
}

// SignTurn waits for the turn of a signature with pub when pub is a large
// RSA key; for any other key it returns at once, and its release does
// nothing. A family that signs with a key of any size calls it around the
// signature.
func (e *Core) SignTurn(ctx context.Context, tenant string, pub crypto.PublicKey) (release func(), err error) {
	if !largeRSA(pub) {
		return func() {}, nil
	}
	return e.heavyWork.acquire(ctx, heavyTenant(tenant), HeavyLargeRSASign)
}
