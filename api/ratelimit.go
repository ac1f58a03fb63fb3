package api

import (
	"container/list"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

// RateLimit is the per-credential request rate: every API token and every
// administrator certificate may make RequestsPerSecond requests per second
// on average, with bursts of up to Burst. RequestsPerSecond 0 disables it.
type RateLimit struct {
	RequestsPerSecond float64
	// Burst defaults to twice RequestsPerSecond (at least 1).
	Burst int
}

func (r RateLimit) burst() int64 {
	if r.Burst > 0 {
		return int64(r.Burst)
	}
	return max(1, int64(math.Ceil(2*r.RequestsPerSecond)))
}

// throttle runs after authentication: a caller over its rate gets 429 with
// Retry-After (whole seconds) in the route's family envelope. Requests
// without a credential are not limited here (publicThrottle limits the
// public routes by client address). When
// the limiter itself cannot answer (the store is down) the request goes
// on: it meets the same store on its way and fails there with the right
// status, and an outage of the limiter must not refuse every caller.
//
// answered is the limiter's answer when authentication already counted
// the request (API tokens); otherwise the request is counted here.
func (s *server) throttle(c *gin.Context, f Family, caller signer.Caller, answered *signer.RateLimitAnswer) bool {
	rl := s.opts.RateLimit
	if !(rl.RequestsPerSecond > 0) {
		return true
	}
	var (
		wait time.Duration
		err  error
	)
	if answered != nil {
		wait, err = answered.Wait, answered.Err
	} else {
		wait, err = s.eng.Throttle(c.Request.Context(), caller.Principal, rl.RequestsPerSecond, rl.burst())
	}
	if err != nil {
		s.log.Warn("rate limiter unavailable; request admitted", "request_id", c.GetString("request_id"), "err", clip(err.Error(), maxLoggedField))
		return true
	}
	if wait <= 0 {
		return true
	}
	secs := max(1, int64(math.Ceil(wait.Seconds())))
	c.Header("Retry-After", strconv.FormatInt(secs, 10))
	writeStatus(c, f, http.StatusTooManyRequests, "TooManyRequests",
		"rate limit exceeded for this credential; retry after "+strconv.FormatInt(secs, 10)+" s")
	return false
}

// PublicRateLimit is the rate at which each client address may call the
// public routes (Access.Public without Unlimited: CRLs, the OpenAPI
// document, and whatever public route comes next). The routes need no
// credential, so the client's address is the only name a limit can use.
// The limit lives in each replica's memory: a client spread over n
// replicas gets n times the rate, which is still a bound.
type PublicRateLimit struct {
	RequestsPerSecond float64
	// Burst defaults to twice RequestsPerSecond (at least 1).
	Burst int
	// MaxClients bounds how many addresses are tracked at once (default
	// defaultMaxPublicClients); past it the one seen least recently is
	// forgotten.
	MaxClients int
}

// defaultMaxPublicClients keeps the tracked addresses to a few MiB.
const defaultMaxPublicClients = 16384

// addrLimiter is a token bucket per client address, in memory, with a
// bounded number of buckets. Forgetting an address costs nothing but
// leniency: it comes back with a full bucket, which is where an address
// idle for Burst/RequestsPerSecond seconds is anyway. So an attacker with
// more addresses than MaxClients can neither grow memory nor get another
// client refused; at worst its own addresses start afresh.
type addrLimiter struct {
	mu    sync.Mutex
	rate  float64
	burst float64
	max   int
	now   func() time.Time
	byKey map[netip.Prefix]*list.Element
	lru   list.List // of *addrBucket, most recently seen first
}

type addrBucket struct {
	key    netip.Prefix
	tokens float64
	at     time.Time
}

func newAddrLimiter(p PublicRateLimit, now func() time.Time) *addrLimiter {
	l := &addrLimiter{rate: p.RequestsPerSecond, burst: float64(RateLimit{RequestsPerSecond: p.RequestsPerSecond, Burst: p.Burst}.burst()),
		max: p.MaxClients, now: now, byKey: map[netip.Prefix]*list.Element{}}
	if l.max <= 0 {
		l.max = defaultMaxPublicClients
	}
	return l
}

// take spends one token of key's bucket: 0 when there was one, else how
// long until there is.
func (l *addrLimiter) take(key netip.Prefix) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var b *addrBucket
	if e, ok := l.byKey[key]; ok {
		l.lru.MoveToFront(e)
		b = e.Value.(*addrBucket)
		if el := now.Sub(b.at).Seconds(); el > 0 {
			b.tokens = min(l.burst, b.tokens+el*l.rate)
			b.at = now
		}
	} else {
		if len(l.byKey) >= l.max {
			old := l.lru.Back()
			l.lru.Remove(old)
			delete(l.byKey, old.Value.(*addrBucket).key)
		}
		b = &addrBucket{key: key, tokens: l.burst, at: now}
		l.byKey[key] = l.lru.PushFront(b)
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// tracked is the number of addresses held.
func (l *addrLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byKey)
}

// publicThrottle counts a request to a public route against its client's
// address: past the limit, 429 with Retry-After in the family envelope.
func (s *server) publicThrottle(c *gin.Context, f Family) bool {
	if s.public == nil {
		return true
	}
	wait := s.public.take(s.clientKey(c))
	if wait <= 0 {
		return true
	}
	secs := max(1, int64(math.Ceil(wait.Seconds())))
	c.Header("Retry-After", strconv.FormatInt(secs, 10))
	writeStatus(c, f, http.StatusTooManyRequests, "TooManyRequests",
		"too many requests from this address; retry after "+strconv.FormatInt(secs, 10)+" s")
	return false
}

// clientKey names the client of a request for the public limit: its IP
// address, an IPv6 address by its /64 (one host commonly holds a whole
// /64, and would otherwise have 2^64 names). In trusted-proxy mode the
// peer is the proxy, so the last X-Forwarded-For entry names the client:
// the one the proxy itself appended (nginx's $proxy_add_x_forwarded_for)
// or wrote; entries before it are whatever the client sent and are never
// read. Without a readable entry the peer's address is used.
func (s *server) clientKey(c *gin.Context) netip.Prefix {
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(c.Request.RemoteAddr); err == nil {
		addr = ap.Addr()
	}
	if s.opts.TrustedProxy {
		if a, ok := lastForwardedFor(c.Request.Header.Values("X-Forwarded-For")); ok {
			addr = a
		}
	}
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// lastForwardedFor parses the last entry of the last X-Forwarded-For line.
func lastForwardedFor(lines []string) (netip.Addr, bool) {
	if len(lines) == 0 {
		return netip.Addr{}, false
	}
	v := lines[len(lines)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	v = strings.TrimSpace(v)
	if a, err := netip.ParseAddr(v); err == nil {
		return a, true
	}
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.Addr(), true
	}
	return netip.Addr{}, false
}
