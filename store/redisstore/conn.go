package redisstore

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/hsmca/hsmca/store"
)

// Mode is how the store reaches Redis.
type Mode string

const (
	// Standalone is one Redis server (or a proxy that looks like one),
	// named by a redis:// or rediss:// URL.
	Standalone Mode = "standalone"
	// Sentinel is a master with replicas watched by Redis Sentinel: the
	// sentinels name the master, and the client follows a failover.
	Sentinel Mode = "sentinel"
	// Cluster is Redis Cluster: keys spread over several masters by hash
	// slot; the client follows the slots as they move (MOVED, ASK).
	Cluster Mode = "cluster"
)

// Conn says where Redis is and how to log in. Passwords are values here
// (the caller reads them from files or the environment); they appear in no
// error and not in String.
type Conn struct {
	// Mode is Standalone when empty.
	Mode Mode
	// URL is the standalone server: redis://[user:password@]host:port/db
	// or rediss://... (TLS). Username and Password, when set, replace the
	// URL's.
	URL string
	// Addrs are the sentinels (Sentinel) or some nodes of the cluster to
	// learn the topology from (Cluster), host:port each.
	Addrs []string
	// MasterName is the name the sentinels monitor the master under.
	MasterName string
	// DB is the database number in Sentinel mode (a cluster has only 0;
	// standalone takes it from the URL).
	DB int
	// Username and Password log in to the data nodes (ACL user; an empty
	// username with a password is requirepass's default user).
	Username, Password string
	// SentinelUsername and SentinelPassword log in to the sentinels.
	SentinelUsername, SentinelPassword string
	// TLS, when set, is the TLS configuration of every connection (data
	// nodes and sentinels): CA bundle, client certificate. With a rediss://
	// URL and no TLS, the system's roots are used.
	TLS *tls.Config
}

func (c Conn) mode() Mode {
	if c.Mode == "" {
		return Standalone
	}
	return c.Mode
}

// String describes the connection without secrets.
func (c Conn) String() string {
	switch c.mode() {
	case Sentinel:
		return fmt.Sprintf("sentinel master %q via %s", c.MasterName, strings.Join(c.Addrs, ","))
	case Cluster:
		return "cluster via " + strings.Join(c.Addrs, ",")
	}
	if o, err := redis.ParseURL(c.URL); err == nil {
		return fmt.Sprintf("standalone %s db %d", o.Addr, o.DB)
	}
	return "standalone (bad URL)"
}

func (c Conn) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: redis: %s", store.ErrInvalid, fmt.Sprintf(format, args...))
	}
	switch c.mode() {
	case Standalone:
		if c.URL == "" {
			return bad("standalone mode needs a redis:// or rediss:// URL")
		}
		if len(c.Addrs) > 0 || c.MasterName != "" {
			return bad("standalone mode takes a URL, not addresses or a master name")
		}
	case Sentinel:
		if c.MasterName == "" || len(c.Addrs) == 0 {
			return bad("sentinel mode needs the master name and at least one sentinel address")
		}
	case Cluster:
		if len(c.Addrs) == 0 {
			return bad("cluster mode needs at least one node address")
		}
		if c.MasterName != "" || c.DB != 0 {
			return bad("cluster mode takes neither a master name nor a database number")
		}
	default:
		return bad("mode %q: want standalone, sentinel or cluster", c.Mode)
	}
	if c.mode() != Standalone {
		if c.URL != "" {
			return bad("%s mode takes addresses, not a URL", c.mode())
		}
		for _, a := range c.Addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return bad("address %q: want host:port", a)
			}
		}
	}
	return nil
}

// timeouts are the client's deadlines (see Options).
type timeouts struct{ dial, read, write time.Duration }

func pickTimeouts(opts Options, dial, read, write time.Duration) timeouts {
	pick := func(opt, fromURL time.Duration) time.Duration {
		switch {
		case opt > 0:
			return opt
		case fromURL > 0:
			return fromURL
		}
		return defaultTimeout
	}
	return timeouts{pick(opts.DialTimeout, dial), pick(opts.ReadTimeout, read), pick(opts.WriteTimeout, write)}
}

// newClient makes the go-redis client of c: a *redis.Client (standalone),
// a failover *redis.Client (Sentinel) or a *redis.ClusterClient.
//
// Whatever the mode: no command retries (-1 means none to go-redis), since
// go-redis retries a command whose reply timed out, and a write script that
// did run would then report a spurious ErrExists or conflict, and a hung
// server would hold a request twice as long; a timeout is ErrUnavailable
// and the caller learns the outcome is unknown. Connections a restarted
// server closed are dropped by the pool's health check before use. One
// dial attempt, for the same reason: go-redis' default dial retries and
// backoff hold a request for seconds against a dead server. The cluster
// client retries within its redirect budget whatever MaxRetries says, so
// the writes also mark their commands not retriable (see noRetry); MOVED
// and ASK are still followed.
func newClient(c Conn, opts Options) (redis.UniversalClient, error) {
	// A write and its WAIT are read as one pipeline, within the read
	// timeout.
	var extra time.Duration
	if mayWait(c, opts) {
		extra = waitTimeoutOf(opts)
	}
	switch c.mode() {
	case Sentinel:
		t := pickTimeouts(opts, 0, 0, 0)
		t.read += extra
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       c.MasterName,
			SentinelAddrs:    c.Addrs,
			SentinelUsername: c.SentinelUsername,
			SentinelPassword: c.SentinelPassword,
			Username:         c.Username,
			Password:         c.Password,
			DB:               c.DB,
			TLSConfig:        c.TLS,
			DialTimeout:      t.dial,
			ReadTimeout:      t.read,
			WriteTimeout:     t.write,
			PoolSize:         opts.PoolSize,
			PoolTimeout:      t.read + time.Second,
			MaxRetries:       -1,
			DialerRetries:    1,
			DisableIdentity:  true,
			Protocol:         resp,
		}), nil
	case Cluster:
		t := pickTimeouts(opts, 0, 0, 0)
		t.read += extra
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                    c.Addrs,
			Username:                 c.Username,
			Password:                 c.Password,
			TLSConfig:                c.TLS,
			DialTimeout:              t.dial,
			ReadTimeout:              t.read,
			WriteTimeout:             t.write,
			PoolSize:                 opts.PoolSize,
			PoolTimeout:              t.read + time.Second,
			MaxRetries:               -1,
			DialerRetries:            1,
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
			Protocol:                 resp,
		}), nil
	}
	ro, err := redis.ParseURL(c.URL)
	if err != nil {
		// ParseURL's errors may quote the URL, password included.
		return nil, fmt.Errorf("%w: redis: the URL is not a redis:// or rediss:// URL", store.ErrInvalid)
	}
	t := pickTimeouts(opts, ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout)
	t.read += extra
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout = t.dial, t.read, t.write
	if opts.PoolSize > 0 {
		ro.PoolSize = opts.PoolSize
	}
	if c.Username != "" {
		ro.Username = c.Username
	}
	if c.Password != "" {
		ro.Password = c.Password
	}
	if c.TLS != nil {
		cfg := c.TLS.Clone()
		if cfg.ServerName == "" {
			if ro.TLSConfig != nil {
				cfg.ServerName = ro.TLSConfig.ServerName
			} else if h, _, err := net.SplitHostPort(ro.Addr); err == nil {
				cfg.ServerName = h
			}
		}
		ro.TLSConfig = cfg
	}
	ro.MaxRetries = -1
	ro.DialerRetries = 1
	ro.PoolTimeout = ro.ReadTimeout + time.Second
	ro.DisableIdentity = true
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if ro.Protocol == 0 { // unless the URL names one (?protocol=3)
		ro.Protocol = resp
	}
	return redis.NewClient(ro), nil
}

// resp is the protocol version the store speaks: RESP2. The store uses
// nothing RESP3 adds (push notifications, client-side caching), and with
// RESP3 the client peeks at the socket for pending push notifications
// around each command: one more read system call per round trip.
const resp = 2
