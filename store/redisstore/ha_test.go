package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
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
			return openConn(t, conn, redisstore.Options{KeyPrefix: prefix(), WaitTimeout: slowWait})
		})
	})
	t.Run("Indexed", func(t *testing.T) {
		opener := func(t *testing.T) store.Store {
			return openConn(t, conn, redisstore.Options{KeyPrefix: prefix(), Indexes: storetest.SuiteIndexes, WaitTimeout: slowWait})
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
				last = openConn(t, conn, redisstore.Options{KeyPrefix: p, Indexes: ixs, WaitTimeout: slowWait})
				return last
			}
		})
	})
}

func TestConformanceSentinel(t *testing.T) {
	t.Parallel()
	s := testenv.StartSentinel(t)
	t.Run("Topology", func(t *testing.T) { sentinelTopology(t, s) })
	runSuites(t, "sen", sentinelConn(s))
}

// The topology as the doctor shows it: the master and its replicas, the
// sentinels; a standalone URL naming a replica says so.
func sentinelTopology(t *testing.T, sen *testenv.Sentinel) {
	ctx := context.Background()
	top, err := openConn(t, sentinelConn(sen), redisstore.Options{}).Topology(ctx)
	require.NoError(t, err)
	assert.Equal(t, redisstore.Sentinel, top.Mode)
	require.Len(t, top.Masters, 1)
	m := top.Masters[0]
	assert.Equal(t, sen.Data[0].Addr, m.Addr)
	assert.Equal(t, "master", m.Role)
	assert.Empty(t, m.Err)
	require.Len(t, m.Replicas, 2)
	for _, r := range m.Replicas {
		assert.Equal(t, "online", r.State)
		assert.Contains(t, []string{sen.Data[1].Addr, sen.Data[2].Addr}, r.Addr)
	}
	require.Len(t, top.Sentinels, 3)
	for _, st := range top.Sentinels {
		assert.Empty(t, st.Err)
		assert.Equal(t, sen.Data[0].Addr, st.Master)
		assert.Equal(t, 2, st.Replicas)
		assert.Equal(t, 2, st.Sentinels)
		assert.Equal(t, 2, st.Quorum)
	}

	top, err = openConn(t, redisstore.Conn{URL: "redis://" + sen.Data[1].Addr + "/0"}, redisstore.Options{}).Topology(ctx)
	require.NoError(t, err)
	assert.Equal(t, redisstore.Standalone, top.Mode)
	assert.Equal(t, "slave", top.Masters[0].Role)
}

// The cluster's masters, each with its slots and replica.
func clusterTopology(t *testing.T, clu *testenv.Cluster) {
	top, err := openConn(t, clusterConn(clu), redisstore.Options{}).Topology(context.Background())
	require.NoError(t, err)
	assert.Equal(t, redisstore.Cluster, top.Mode)
	assert.Equal(t, "ok", top.ClusterState)
	assert.Equal(t, 16384, top.SlotsOK)
	masters, err := clu.Masters()
	require.NoError(t, err)
	require.Len(t, top.Masters, 3)
	for i, m := range top.Masters {
		assert.Equal(t, masters[i], m.Addr)
		assert.Empty(t, m.Err)
		assert.NotEmpty(t, m.Slots)
		require.Len(t, m.Replicas, 1)
		assert.Equal(t, "online", m.Replicas[0].State)
	}
}

// On a cluster the suites' tenants live on several masters: the
// ManyTenants test's tenants hash to slots of at least two of the three,
// and after the suites at least two masters hold tenant keys.
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
	t.Run("Topology", func(t *testing.T) { clusterTopology(t, c) })
	t.Run("BackfillEveryMaster", func(t *testing.T) { backfillEveryMaster(t, c) })

	runSuites(t, "clu", clusterConn(c))

	addrs, err := c.Masters()
	require.NoError(t, err)
	holding := 0
	for _, addr := range addrs {
		cl := c.Node(addr).Client()
		keys, err := cl.Keys(context.Background(), "clu*:{t*}:*").Result()
		cl.Close()
		require.NoError(t, err)
		t.Logf("master %s holds %d tenant keys", addr, len(keys))
		if len(keys) > 0 {
			holding++
		}
	}
	assert.GreaterOrEqual(t, holding, 2, "the suites' tenant keys are on several masters")
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
			s := openConn(t, conn, redisstore.Options{KeyPrefix: "sec", WaitTimeout: slowWait})
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
			_, err := redisstore.OpenConn(ctx, bad, redisstore.Options{KeyPrefix: "sec", WaitTimeout: slowWait})
			require.Error(t, err)
			assert.NotContains(t, err.Error(), wrong)
			assert.NotContains(t, err.Error(), sen.Auth.Password)

			noTLS := conn
			noTLS.TLS = nil
			noTLS.URL = strings.Replace(noTLS.URL, "rediss://", "redis://", 1)
			_, err = redisstore.OpenConn(ctx, noTLS, redisstore.Options{KeyPrefix: "sec", WaitTimeout: slowWait})
			require.Error(t, err, "the servers speak TLS only")
		})
	}
	// The sentinels have their own user.
	bad := sentinelConn(sen)
	bad.SentinelPassword = "wrong"
	_, err := redisstore.OpenConn(ctx, bad, redisstore.Options{KeyPrefix: "sec", WaitTimeout: slowWait})
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

// A tenant's slot moves to another master while its records, unique
// keys, index, quota, intents and events are written and read: the client
// follows ASK and MOVED, writes refused while the slot is split wait for
// it, and no operation fails; afterwards everything is on the new master
// and consistent.
func TestClusterReshardingFollowed(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t)
	ctx := context.Background()
	ixs := []store.Index{{Kind: "k", Field: "f"}}
	s := openConn(t, clusterConn(c), redisstore.Options{KeyPrefix: "rs", Indexes: ixs, WaitTimeout: slowWait})
	q := &store.Quota{Resource: "things", Limit: -1}
	newRec := func(i int) *store.Record {
		return &store.Record{Kind: "k", Tenant: "t1", ID: fmt.Sprint("r", i), Unique: []string{fmt.Sprint("name:", i)},
			Fields: map[string]string{"f": fmt.Sprint(i % 3)}, Data: json.RawMessage(`{}`)}
	}
	created := 0
	for ; created < 60; created++ {
		require.NoError(t, s.Create(ctx, newRec(created), store.WriteOpts{Quota: q}))
	}
	_, err := s.AppendEvents(ctx, "t1", []json.RawMessage{json.RawMessage(`{"n":0}`)})
	require.NoError(t, err)

	from, err := c.MasterOf("rs:{t1}:x")
	require.NoError(t, err)
	masters, err := c.Masters()
	require.NoError(t, err)
	to := masters[0]
	if to == from {
		to = masters[1]
	}
	cl := c.Node(from).Client()
	slot, err := cl.ClusterKeySlot(ctx, "rs:{t1}:x").Result()
	cl.Close()
	require.NoError(t, err)

	done := make(chan struct{})
	work := make(chan error, 1)
	var ops atomic.Int64
	go func() {
		step := func(i int) error {
			in := fmt.Sprint("in", i)
			if err := s.PutIntent(ctx, &store.Intent{ID: in, Tenant: "t1", Kind: "k"}); err != nil {
				return fmt.Errorf("put intent: %w", err)
			}
			if err := s.Create(ctx, newRec(i), store.WriteOpts{Quota: q, Intent: in}); err != nil {
				return fmt.Errorf("create: %w", err)
			}
			got, err := s.GetByUnique(ctx, "k", "t1", fmt.Sprint("name:", i%60))
			if err != nil {
				return fmt.Errorf("get by unique: %w", err)
			}
			got.Fields = map[string]string{"f": fmt.Sprint(i % 5)}
			if err := s.Update(ctx, got, store.WriteOpts{}); err != nil {
				return fmt.Errorf("update: %w", err)
			}
			if _, err := s.List(ctx, store.Query{Kind: "k", Tenant: "t1", Filters: []store.Filter{{Field: "f", Value: "1"}}}); err != nil {
				return fmt.Errorf("list: %w", err)
			}
			evs, err := s.AppendEvents(ctx, "t1", []json.RawMessage{json.RawMessage(`{"n":1}`)})
			if err != nil {
				return fmt.Errorf("append: %w", err)
			}
			if len(evs) != 1 {
				return fmt.Errorf("append: %d events back", len(evs))
			}
			if _, err := s.ListIntents(ctx); err != nil {
				return fmt.Errorf("list intents: %w", err)
			}
			return nil
		}
		for i := created; ; i++ {
			select {
			case <-done:
				work <- nil
				return
			default:
			}
			if err := step(i); err != nil {
				work <- fmt.Errorf("step %d: %w", i, err)
				return
			}
			ops.Add(1)
		}
	}()
	c.MigrateSlot(t, int(slot), to, func() { time.Sleep(5 * time.Millisecond) })
	// Some work after the move too (MOVED, then the new topology).
	seen := ops.Load()
	require.Eventually(t, func() bool { return ops.Load() > seen+10 }, 30*time.Second, 10*time.Millisecond)
	close(done)
	require.NoError(t, <-work)
	t.Logf("%d rounds of work during and after the move", ops.Load())

	now, err := c.MasterOf("rs:{t1}:x")
	require.NoError(t, err)
	assert.Equal(t, to, now)
	redirects := ""
	for _, addr := range []string{from, to} {
		cl := c.Node(addr).Client()
		stats, err := cl.Info(ctx, "errorstats").Result()
		cl.Close()
		require.NoError(t, err)
		for _, line := range strings.Split(stats, "\n") {
			if strings.HasPrefix(line, "errorstat_") {
				redirects += addr + " " + strings.TrimSpace(line) + "; "
			}
		}
	}
	t.Logf("replies met: %s", redirects)
	assert.Regexp(t, `errorstat_(ASK|TRYAGAIN)`, redirects, "the work met the slot while it moved")
	n, err := s.CountRecords(ctx, "k", "t1")
	require.NoError(t, err)
	usage, err := s.QuotaUsage(ctx, "t1", "things")
	require.NoError(t, err)
	assert.Equal(t, n, usage, "quota equals records")
	assert.EqualValues(t, 60+ops.Load(), n)
	ins, err := s.ListIntents(ctx)
	require.NoError(t, err)
	assert.Empty(t, ins, "every intent committed with its record")
	evs, err := s.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	assert.EqualValues(t, 1+ops.Load(), len(evs))
	broken, err := store.VerifyChain(evs, "", 0)
	require.NoError(t, err)
	assert.Zero(t, broken)
	for f := range 5 {
		page, err := s.List(ctx, store.Query{Kind: "k", Tenant: "t1", Filters: []store.Filter{{Field: "f", Value: fmt.Sprint(f)}}, OffsetPaging: true})
		require.NoError(t, err)
		for _, r := range page.Records {
			assert.Equal(t, fmt.Sprint(f), r.Fields["f"])
		}
	}
	fresh := openConn(t, clusterConn(c), redisstore.Options{KeyPrefix: "rs", Indexes: ixs, WaitTimeout: slowWait})
	got, err := fresh.GetByUnique(ctx, "k", "t1", "name:1")
	require.NoError(t, err)
	assert.Equal(t, "r1", got.ID)
}

// An index declared on a store that holds records of tenants on every
// master is built for all of them at open (the scan visits each master).
func backfillEveryMaster(t *testing.T, c *testenv.Cluster) {
	ctx := context.Background()
	conn := clusterConn(c)
	plain := openConn(t, conn, redisstore.Options{KeyPrefix: "bf", WaitTimeout: slowWait})
	for _, tn := range storetest.ManyTenants {
		for i := range 30 {
			require.NoError(t, plain.Create(ctx, &store.Record{Kind: "k", Tenant: tn, ID: fmt.Sprint("r", i),
				Fields: map[string]string{"f": fmt.Sprint(i % 3)}, Data: json.RawMessage(`{}`)}, store.WriteOpts{}))
		}
	}
	indexed := openConn(t, conn, redisstore.Options{KeyPrefix: "bf", Indexes: []store.Index{{Kind: "k", Field: "f"}}, WaitTimeout: slowWait})
	for _, tn := range storetest.ManyTenants {
		cl := c.Node(mustMasterOf(t, c, "bf:{"+tn+"}:x")).Client()
		n, err := cl.ZCard(ctx, "bf:{"+tn+"}:ix:k:f").Result()
		cl.Close()
		require.NoError(t, err)
		assert.EqualValues(t, 30, n, "index of %s built", tn)
		page, err := indexed.List(ctx, store.Query{Kind: "k", Tenant: tn, Filters: []store.Filter{{Field: "f", Value: "1"}}, OffsetPaging: true})
		require.NoError(t, err)
		assert.Equal(t, 10, page.Total, tn)
	}
}

func mustMasterOf(t *testing.T, c *testenv.Cluster, key string) string {
	t.Helper()
	m, err := c.MasterOf(key)
	require.NoError(t, err)
	return m
}

// The store follows a failover by itself, without being opened again:
// Sentinel names the promoted replica, a cluster serves the dead master's
// slots from its replica. (No load here; what survives a failover under
// load is another test's.)
// slowWait is the wait for replicas of the tests whose writes must
// succeed (all but the timing ones): a shared machine under -race can hold
// a replica's acknowledgement past the default 500ms.
const slowWait = 5 * time.Second

func TestStoreFollowsFailover(t *testing.T) {
	// A write that answered 503 (replicas not confirming it yet) may have
	// been kept: trying it again then finds it.
	created := func(err error) bool { return err == nil || errors.Is(err, store.ErrExists) }
	t.Parallel()
	ctx := context.Background()
	rec := func(tn, id string) *store.Record {
		return &store.Record{Kind: "k", Tenant: tn, ID: id, Data: json.RawMessage(`{}`)}
	}
	t.Run("sentinel", func(t *testing.T) {
		t.Parallel()
		sen := testenv.StartSentinel(t)
		s := openConn(t, sentinelConn(sen), redisstore.Options{KeyPrefix: "fo", WaitTimeout: slowWait})
		require.NoError(t, s.Create(ctx, rec("t1", "before"), store.WriteOpts{}))
		old := sen.KillMaster(t).Addr
		start := time.Now()
		now := sen.WaitFailover(t, old, testenv.FailoverWait)
		require.Eventually(t, func() bool { return created(s.Create(ctx, rec("t1", "after"), store.WriteOpts{})) },
			30*time.Second, 20*time.Millisecond)
		t.Logf("writes go to %s %s after the master was killed", now, time.Since(start).Round(time.Millisecond))
		top, err := s.Topology(ctx)
		require.NoError(t, err)
		assert.NotEqual(t, old, top.Masters[0].Addr)
		assert.Equal(t, "master", top.Masters[0].Role)
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		clu := testenv.StartCluster(t)
		s := openConn(t, clusterConn(clu), redisstore.Options{KeyPrefix: "fo", WaitTimeout: slowWait})
		require.NoError(t, s.Create(ctx, rec("t1", "before"), store.WriteOpts{}))
		victim := mustMasterOf(t, clu, "fo:{t1}:x")
		slots, err := clu.SlotsOf(victim)
		require.NoError(t, err)
		n, _ := s.WaitReplicas()
		require.Equal(t, 1, n, "writes wait for a replica by default")
		dead := clu.KillMaster(t, victim)
		start := time.Now()
		now := clu.WaitPromotion(t, victim, slots, testenv.FailoverWait)
		// The promoted replica has no replica of its own: a write is
		// refused (it may be kept) until the old master is back as one.
		err = s.Create(ctx, rec("t1", "alone"), store.WriteOpts{})
		require.ErrorIs(t, err, store.ErrUnavailable)
		dead.Start()
		var last error
		assert.Eventually(t, func() bool {
			last = s.Create(ctx, rec("t1", "after"), store.WriteOpts{})
			return created(last)
		}, 30*time.Second, 20*time.Millisecond)
		require.True(t, created(last), "%v", last)
		t.Logf("writes go to %s %s after the master was killed (its replica back)", now, time.Since(start).Round(time.Millisecond))
		require.NoError(t, s.Ping(ctx))
	})
}
