package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func key(s string) netip.Prefix {
	a := netip.MustParseAddr(s)
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// The bucket admits the burst at once, then one request per 1/rate
// seconds, and says how long to wait.
func TestAddrLimiterRefills(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := newAddrLimiter(PublicRateLimit{RequestsPerSecond: 2, Burst: 3}, clk.now)
	a := key("192.0.2.1")
	for i := 0; i < 3; i++ {
		assert.Zero(t, l.take(a), "request %d of the burst", i)
	}
	assert.Equal(t, 500*time.Millisecond, l.take(a), "empty: one token takes 1/rate")
	assert.Zero(t, l.take(key("192.0.2.2")), "another address has its own bucket")

	clk.t = clk.t.Add(500 * time.Millisecond)
	assert.Zero(t, l.take(a), "refilled by one")
	assert.Positive(t, l.take(a))
	clk.t = clk.t.Add(time.Hour)
	for i := 0; i < 3; i++ {
		assert.Zero(t, l.take(a), "refilled to the burst, not beyond: %d", i)
	}
	assert.Positive(t, l.take(a))
	clk.t = clk.t.Add(-time.Hour) // a clock stepped back refills nothing
	assert.Positive(t, l.take(a))

	d := newAddrLimiter(PublicRateLimit{RequestsPerSecond: 5}, clk.now)
	for i := 0; i < 10; i++ {
		assert.Zero(t, d.take(a), "default burst is twice the rate: %d", i)
	}
	assert.Positive(t, d.take(a))
}

// However many addresses call, the limiter holds at most MaxClients
// buckets; the least recently seen goes first, and a recent one keeps its
// state.
func TestAddrLimiterIsBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := newAddrLimiter(PublicRateLimit{RequestsPerSecond: 1, Burst: 1, MaxClients: 8}, clk.now)
	hot := key("198.51.100.7")
	assert.Zero(t, l.take(hot))
	for i := 0; i < 10000; i++ {
		l.take(key(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)))
		if i%4 == 0 {
			assert.Positive(t, l.take(hot), "the hot address stays limited: it is never the least recent")
		}
		require.LessOrEqual(t, l.tracked(), 8)
	}
	for i := 0; i < 10000; i++ {
		l.take(key(fmt.Sprintf("2001:db8:%x:%x::1", i>>16, i&0xffff)))
	}
	assert.Equal(t, 8, l.tracked())
	assert.Equal(t, defaultMaxPublicClients, newAddrLimiter(PublicRateLimit{RequestsPerSecond: 1}, clk.now).max)
}

// The client key: the peer's address (an IPv6 one by its /64); the last
// X-Forwarded-For entry only in trusted-proxy mode.
func TestClientKey(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	keyOf := func(trusted bool, remote string, xff ...string) string {
		s := &server{opts: Options{TrustedProxy: trusted}}
		req := httptest.NewRequest("GET", "/x", nil)
		req.RemoteAddr = remote
		for _, v := range xff {
			req.Header.Add("X-Forwarded-For", v)
		}
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = req
		return s.clientKey(c).String()
	}
	assert.Equal(t, "192.0.2.1/32", keyOf(false, "192.0.2.1:5000"))
	assert.Equal(t, "192.0.2.1/32", keyOf(false, "[::ffff:192.0.2.1]:5000"), "IPv4-mapped is IPv4")
	assert.Equal(t, "2001:db8:1:2::/64", keyOf(false, "[2001:db8:1:2:aaaa::1]:5000"))
	assert.Equal(t, keyOf(false, "[2001:db8:1:2::1]:1"), keyOf(false, "[2001:db8:1:2:ffff:ffff:ffff:ffff]:2"), "one /64, one bucket")
	assert.Equal(t, "192.0.2.1/32", keyOf(false, "192.0.2.1:5000", "203.0.113.9"), "X-Forwarded-For is ignored without a trusted proxy")

	assert.Equal(t, "203.0.113.9/32", keyOf(true, "127.0.0.1:5000", "203.0.113.9"))
	assert.Equal(t, "203.0.113.9/32", keyOf(true, "127.0.0.1:5000", "1.1.1.1, 2.2.2.2, 203.0.113.9"), "the entry the proxy appended")
	assert.Equal(t, "203.0.113.9/32", keyOf(true, "127.0.0.1:5000", "1.1.1.1", "203.0.113.9"), "the last header line")
	assert.Equal(t, "2001:db8::/64", keyOf(true, "127.0.0.1:5000", "2001:db8::5"))
	assert.Equal(t, "203.0.113.9/32", keyOf(true, "127.0.0.1:5000", "203.0.113.9:4711"))
	assert.Equal(t, "127.0.0.1/32", keyOf(true, "127.0.0.1:5000", "garbage"), "unreadable: the peer")
	assert.Equal(t, "127.0.0.1/32", keyOf(true, "127.0.0.1:5000"))
	assert.Equal(t, "invalid Prefix", keyOf(false, "not an address"), "unreadable peers share one bucket")
}

func TestClip(t *testing.T) {
	assert.Equal(t, "short", clip("short", 10))
	long := strings.Repeat("a", 60000)
	got := clip(long, 32)
	assert.Equal(t, strings.Repeat("a", 32)+"...(60000 bytes)", got)
	got = clip(strings.Repeat("é", 20), 5) // 2-byte runes: cut on a boundary
	assert.Equal(t, "éé...(40 bytes)", got)
}

func TestLoopbackHost(t *testing.T) {
	for _, h := range []string{"127.0.0.1", "127.0.0.1:8080", "localhost", "LOCALHOST:8080", "[::1]:8080", "::1", "127.1.2.3:1"} {
		assert.True(t, loopbackHost(h), h)
	}
	for _, h := range []string{"", "evil.example", "evil.example:8080", "localhost.evil.example", "10.0.0.1:8080", "[2001:db8::1]:80", "0.0.0.0"} {
		assert.False(t, loopbackHost(h), h)
	}
}

func TestRelayed(t *testing.T) {
	assert.False(t, relayed(http.Header{"Content-Type": {"application/json"}, "User-Agent": {"curl"}}))
	for _, h := range []string{"Via", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Anything",
		"X-Original-Forwarded-For", "X-Real-Ip", "Forwarded", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip",
		"Fastly-Client-Ip", "X-Cluster-Client-Ip", "Client-Ip", "X-Proxyuser-Ip", "X-App-Certificate"} {
		hdr := http.Header{}
		hdr.Set(h, "x")
		assert.True(t, relayed(hdr), h)
	}
}
