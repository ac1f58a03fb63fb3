package redisstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/redisstore"
	"github.com/hsmca/hsmca/store/storetest"
)

func openConn(t *testing.T, c redisstore.Conn, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	s, err := redisstore.OpenConn(context.Background(), c, opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func sentinelConn(s *testenv.Sentinel) redisstore.Conn {
	return redisstore.Conn{Mode: redisstore.Sentinel, MasterName: s.MasterName, Addrs: s.SentinelAddrs(),
		Username: s.Auth.Username, Password: s.Auth.Password,
		SentinelUsername: s.Auth.SentinelUsername, SentinelPassword: s.Auth.SentinelPassword, TLS: s.Auth.TLSConfig}
}

func clusterConn(c *testenv.Cluster) redisstore.Conn {
	return redisstore.Conn{Mode: redisstore.Cluster, Addrs: c.Addrs(),
		Username: c.Auth.Username, Password: c.Auth.Password, TLS: c.Auth.TLSConfig}
}

// The conformance suites (plain, indexed, bulk, index model) against one
// topology; each test gets its own key prefix.
func runSuites(t *testing.T, name string, conn redisstore.Conn) {
	var n atomic.Int64
	prefix := func() string { return fmt.Sprintf("%s%d", name, n.Add(1)) }
	t.Run("Plain", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return openConn(t, conn, redisstore.Options{KeyPrefix: prefix()})
		})
	})
	t.Run("Indexed", func(t *testing.T) {
		opener := func(t *testing.T) store.Store {
			return openConn(t, conn, redisstore.Options{KeyPrefix: prefix(), Indexes: storetest.SuiteIndexes})
		}
		storetest.Run(t, opener)
		storetest.RunBulk(t, opener)
	})
	t.Run("IndexModel", func(t *testing.T) {
		storetest.RunIndexed(t, func(t *testing.T) storetest.Reopen {
			p := prefix()
			var last store.Store
			return func(t *testing.T, ixs []store.Index) store.Store {
				if last != nil {
					last.Close()
				}
				last = openConn(t, conn, redisstore.Options{KeyPrefix: p, Indexes: ixs})
				return last
			}
		})
	})
}

func TestConformanceSentinel(t *testing.T) {
	t.Parallel()
	s := testenv.StartSentinel(t)
	runSuites(t, "sen", sentinelConn(s))
}

// On a cluster the suites' tenants live on several masters: the
// ManyTenants test's tenants hash to slots of at least two of the three,
// and after the suites each master holds tenant keys.
func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t)
	masters := map[string]bool{}
	for _, tn := range storetest.ManyTenants {
		m, err := c.MasterOf("x:{" + tn + "}:y")
		require.NoError(t, err)
		masters[m] = true
	}
	require.GreaterOrEqual(t, len(masters), 2, "the tenants of ManyTenants hash to several masters")

	runSuites(t, "clu", clusterConn(c))

	addrs, err := c.Masters()
	require.NoError(t, err)
	for _, addr := range addrs {
		cl := c.Node(addr).Client()
		keys, err := cl.Keys(context.Background(), "clu*:{t*}:*").Result()
		cl.Close()
		require.NoError(t, err)
		assert.NotEmpty(t, keys, "master %s holds tenant keys", addr)
	}
}

// TLS with client certificates and ACL users in every mode: standalone
// (the sentinel topology's master by URL), Sentinel and Cluster. A wrong
// password is refused without being shown.
func TestTLSAndACL(t *testing.T) {
	t.Parallel()
	opts := testenv.HAOptions{TLS: true, ACL: true}
	sen := testenv.StartSentinel(t, opts)
	clu := testenv.StartCluster(t, opts)
	u := url.URL{Scheme: "rediss", User: url.UserPassword(sen.Auth.Username, sen.Auth.Password), Host: sen.Data[0].Addr, Path: "/0"}
	modes := map[string]redisstore.Conn{
		"standalone": {URL: u.String(), TLS: sen.Auth.TLSConfig},
		"sentinel":   sentinelConn(sen),
		"cluster":    clusterConn(clu),
	}
	ctx := context.Background()
	for name, conn := range modes {
		t.Run(name, func(t *testing.T) {
			s := openConn(t, conn, redisstore.Options{KeyPrefix: "sec"})
			for _, tn := range storetest.ManyTenants {
				require.NoError(t, s.Create(ctx, &store.Record{Kind: "k", Tenant: tn, ID: name, Data: json.RawMessage(`{}`)}, store.WriteOpts{}))
				got, err := s.Get(ctx, "k", tn, name)
				require.NoError(t, err)
				assert.Equal(t, name, got.ID)
			}

			bad := conn
			const wrong = "not-the-password-42"
			if bad.URL != "" {
				u := u
				u.User = url.UserPassword(sen.Auth.Username, wrong)
				bad.URL = u.String()
			} else {
				bad.Password = wrong
			}
			_, err := redisstore.OpenConn(ctx, bad, redisstore.Options{KeyPrefix: "sec"})
			require.Error(t, err)
			assert.NotContains(t, err.Error(), wrong)
			assert.NotContains(t, err.Error(), sen.Auth.Password)

			noTLS := conn
			noTLS.TLS = nil
			noTLS.URL = strings.Replace(noTLS.URL, "rediss://", "redis://", 1)
			_, err = redisstore.OpenConn(ctx, noTLS, redisstore.Options{KeyPrefix: "sec"})
			require.Error(t, err, "the servers speak TLS only")
		})
	}
	// The sentinels have their own user.
	bad := sentinelConn(sen)
	bad.SentinelPassword = "wrong"
	_, err := redisstore.OpenConn(ctx, bad, redisstore.Options{KeyPrefix: "sec"})
	require.Error(t, err)
}

// A write whose reply does not come in time is not sent again by the
// cluster client (which retries timeouts within its redirect budget): the
// server, busy for longer than the client's read timeout, then runs every
// command it has received, and it has received the write once.
func TestClusterWriteSentOnce(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t)
	ctx := context.Background()
	for _, n := range c.Nodes {
		// No failure detection while the node is busy.
		cl := n.Client()
		require.NoError(t, cl.ConfigSet(ctx, "cluster-node-timeout", "30000").Err())
		cl.Close()
	}
	s := openConn(t, clusterConn(c), redisstore.Options{KeyPrefix: "once"})
	rec := func(id string) *store.Record {
		return &store.Record{Kind: "k", Tenant: "t1", ID: id, Data: json.RawMessage(`{}`)}
	}
	require.NoError(t, s.Create(ctx, rec("warm"), store.WriteOpts{}), "loads the script on the tenant's master")
	addr, err := c.MasterOf("once:{t1}:x")
	require.NoError(t, err)
	admin := c.Node(addr).Client()
	defer admin.Close()
	require.NoError(t, admin.ConfigResetStat(ctx).Err())

	// A script keeps the node busy for 2s (the client's read timeout is
	// 500ms); commands sent meanwhile wait in their sockets.
	busy := make(chan error, 1)
	blocker := redis.NewClient(&redis.Options{Addr: addr, Username: c.Auth.Username, Password: c.Auth.Password,
		TLSConfig: c.Auth.TLSConfig, ReadTimeout: 10 * time.Second, MaxRetries: -1})
	defer blocker.Close()
	go func() {
		busy <- blocker.Eval(ctx, `
local t = redis.call('TIME')
local start = tonumber(t[1]) * 1000000 + tonumber(t[2])
while true do
  t = redis.call('TIME')
  if tonumber(t[1]) * 1000000 + tonumber(t[2]) - start > 2000000 then return 1 end
end`, nil).Err()
	}()
	require.Eventually(t, func() bool {
		probe := redis.NewClient(&redis.Options{Addr: addr, Username: c.Auth.Username, Password: c.Auth.Password,
			TLSConfig: c.Auth.TLSConfig, ReadTimeout: 50 * time.Millisecond, MaxRetries: -1})
		defer probe.Close()
		return probe.Ping(ctx).Err() != nil
	}, 5*time.Second, 5*time.Millisecond, "the node is busy")
	err = s.Create(ctx, rec("late"), store.WriteOpts{})
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.NoError(t, <-busy)

	got, err := s.Get(ctx, "k", "t1", "late")
	require.NoError(t, err, "the write ran once the node went on")
	assert.EqualValues(t, 1, got.Version)
	stats, err := admin.Info(ctx, "commandstats").Result()
	require.NoError(t, err)
	assert.Regexp(t, `cmdstat_evalsha:calls=1,`, stats, "sent once")
}
