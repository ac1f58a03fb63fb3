package redisstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/internal/storekit"
	"github.com/hsmca/hsmca/store/redisstore"
	"github.com/hsmca/hsmca/store/storetest"
)

func open(t *testing.T, url string, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(context.Background(), url, opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// The suite shares one server; each test gets its own key prefix, which
// gives it an empty store and lets the tests run in parallel.
func TestConformance(t *testing.T) {
	r := testenv.StartRedis(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, r.URL(), redisstore.Options{KeyPrefix: fmt.Sprintf("test%d", n.Add(1))})
	})
}

func TestServerDownAndBack(t *testing.T) {
	r := testenv.StartRedis(t)
	s := open(t, r.URL(), redisstore.Options{})
	ctx := context.Background()
	rec := func(id string) *store.Record {
		return &store.Record{Kind: "k", Tenant: "t1", ID: id, Data: json.RawMessage(`{}`)}
	}
	require.NoError(t, s.Create(ctx, rec("before"), store.WriteOpts{}))
	_, err := s.AppendEvents(ctx, "t1", []json.RawMessage{json.RawMessage(`{"n":1}`)})
	require.NoError(t, err)

	r.Stop()
	ops := map[string]func() error{
		"ping":   func() error { return s.Ping(ctx) },
		"get":    func() error { _, err := s.Get(ctx, "k", "t1", "before"); return err },
		"create": func() error { return s.Create(ctx, rec("during"), store.WriteOpts{}) },
		"create with its event": func() error {
			return s.Create(ctx, rec("during-ev"), store.WriteOpts{Event: json.RawMessage(`{"n":"during"}`)})
		},
		"list":  func() error { _, err := s.List(ctx, store.Query{Kind: "k", Tenant: "t1"}); return err },
		"quota": func() error { return s.ReserveQuota(ctx, "t1", "r", 1, 10) },
		"append": func() error {
			_, err := s.AppendEvents(ctx, "t1", []json.RawMessage{json.RawMessage(`{"n":2}`)})
			return err
		},
		"intents": func() error { _, err := s.ListIntents(ctx); return err },
	}
	for name, op := range ops {
		start := time.Now()
		err := op()
		assert.ErrorIs(t, err, store.ErrUnavailable, name)
		assert.Less(t, time.Since(start), time.Second, "%s fails fast", name)
	}

	// The same Store recovers once the server is back (persistence is off,
	// so the server comes back empty).
	r.Start()
	require.Eventually(t, func() bool { return s.Ping(ctx) == nil }, 10*time.Second, 50*time.Millisecond)
	require.NoError(t, s.Create(ctx, rec("after"), store.WriteOpts{}))
	got, err := s.Get(ctx, "k", "t1", "after")
	require.NoError(t, err)
	assert.Equal(t, "after", got.ID)
	// The head known before the failure is not trusted: the chain starts
	// again on the empty server, the create's event first.
	require.NoError(t, s.Create(ctx, rec("after-ev"), store.WriteOpts{Event: json.RawMessage(`{"n":"after"}`)}))
	evs, err := s.AppendEvents(ctx, "t1", []json.RawMessage{json.RawMessage(`{"n":3}`)})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), evs[0].Seq)
	all, err := s.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	require.Len(t, all, 2)
	_, err = store.VerifyChain(all, "", 0)
	assert.NoError(t, err)
}

func TestOpenFailsWhenNoServer(t *testing.T) {
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t))
	start := time.Now()
	_, err := redisstore.Open(context.Background(), url, redisstore.Options{})
	assert.ErrorIs(t, err, store.ErrUnavailable)
	assert.Less(t, time.Since(start), time.Second)

	_, err = redisstore.Open(context.Background(), "http://nope", redisstore.Options{})
	assert.Error(t, err)
}

// Keys carry the tenant's hash tag so that one tenant lives in one cluster
// slot; the scripts depend on it.
func TestKeysCarryTenantTag(t *testing.T) {
	r := testenv.StartRedis(t)
	s := open(t, r.URL(), redisstore.Options{KeyPrefix: "tag"})
	ctx := context.Background()
	q := &store.Quota{Resource: "things", Limit: 5}
	require.NoError(t, s.PutIntent(ctx, &store.Intent{ID: "i1", Tenant: "acme", Kind: "ca"}))
	require.NoError(t, s.Create(ctx, &store.Record{Kind: "ca", Tenant: "acme", ID: "c1", Unique: []string{"name:x"},
		Data: json.RawMessage(`{}`)}, store.WriteOpts{Quota: q}))
	_, err := s.AppendEvents(ctx, "acme", []json.RawMessage{json.RawMessage(`{}`)})
	require.NoError(t, err)

	keys := rawKeys(t, r.Addr, "tag:*")
	global := map[string]bool{"tag:{:platform}:intent-tenants": true, "tag:{:platform}:event-tenants": true}
	var tenantKeys int
	for _, k := range keys {
		if global[k] {
			continue
		}
		assert.Regexp(t, `^tag:\{acme\}:`, k)
		tenantKeys++
	}
	assert.GreaterOrEqual(t, tenantKeys, 8, "record, unique index, seq index, counter, quota, intents, events, head: %v", keys)
}

func rawKeys(t *testing.T, addr, pattern string) []string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	keys, err := c.Keys(context.Background(), pattern).Result()
	require.NoError(t, err)
	return keys
}

// A server that accepts connections but never answers (here: stopped with
// SIGSTOP) must fail requests on the read timeout, not hang them.
func TestHungServerTimesOut(t *testing.T) {
	r := testenv.StartRedis(t)
	s := open(t, r.URL(), redisstore.Options{})
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	info, err := c.InfoMap(ctx, "server").Result()
	c.Close()
	require.NoError(t, err)
	pid, err := strconv.Atoi(info["Server"]["process_id"])
	require.NoError(t, err)

	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)

	for name, op := range map[string]func() error{
		"ping": func() error { return s.Ping(ctx) },
		"create": func() error {
			return s.Create(ctx, &store.Record{Kind: "k", Tenant: "t1", ID: "a", Data: json.RawMessage(`{}`)}, store.WriteOpts{})
		},
	} {
		start := time.Now()
		err := op()
		assert.ErrorIs(t, err, store.ErrUnavailable, name)
		assert.Less(t, time.Since(start), time.Second, "%s fails on the read timeout", name)
	}

	resume()
	require.Eventually(t, func() bool { return s.Ping(ctx) == nil }, 10*time.Second, 50*time.Millisecond)
}

func TestIndexes(t *testing.T) {
	r := testenv.StartRedis(t)
	var n atomic.Int64
	storetest.RunIndexed(t, func(t *testing.T) storetest.Reopen {
		prefix := fmt.Sprintf("ix%d", n.Add(1))
		var last store.Store
		return func(t *testing.T, ixs []store.Index) store.Store {
			if last != nil {
				last.Close()
			}
			last = open(t, r.URL(), redisstore.Options{KeyPrefix: prefix, Indexes: ixs})
			return last
		}
	})
}

// The suite again with its fields indexed: same answers on other paths.
func TestConformanceIndexed(t *testing.T) {
	r := testenv.StartRedis(t)
	var n atomic.Int64
	opener := func(t *testing.T) store.Store {
		return open(t, r.URL(), redisstore.Options{KeyPrefix: fmt.Sprintf("ixc%d", n.Add(1)), Indexes: storetest.SuiteIndexes})
	}
	storetest.Run(t, opener)
	storetest.RunBulk(t, opener)
}

// Building an index at open is safe beside writers and other replicas
// building it at the same time: afterwards every index holds exactly one
// entry per record, with the record's current value.
func TestIndexBackfillConcurrentWithWritesAndReplicas(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	const prefix = "bf"
	ixs := []store.Index{{Kind: "doc", Field: "a"}, {Kind: "doc", Field: "b"}}
	fields := func(i int) map[string]string {
		return map[string]string{"a": fmt.Sprintf("a%d", i%7), "b": fmt.Sprintf("b%d", i%3)}
	}
	plain := open(t, r.URL(), redisstore.Options{KeyPrefix: prefix})
	for i := range 1200 {
		tenant := fmt.Sprintf("t%d", i%3)
		require.NoError(t, plain.Create(ctx, &store.Record{Kind: "doc", Tenant: tenant, ID: fmt.Sprintf("r%d", i),
			Fields: fields(i), Data: json.RawMessage(`{}`)}, store.WriteOpts{}))
	}
	writer := open(t, r.URL(), redisstore.Options{KeyPrefix: prefix, Indexes: ixs})
	// Forget the index the writer built, as if it had never existed; the
	// writer keeps maintaining it meanwhile.
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, prefix+":*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		switch {
		case strings.Contains(k, ":ix:") || strings.HasSuffix(k, ":ixready"):
			require.NoError(t, rdb.Del(ctx, k).Err())
		case strings.Contains(k, ":rec:"):
			require.NoError(t, rdb.HDel(ctx, k, "ix:a", "ix:b").Err())
		}
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			tenant := fmt.Sprintf("t%d", i%3)
			id := fmt.Sprintf("r%d", (i*31)%1200)
			switch i % 4 {
			case 0:
				_ = writer.Delete(ctx, "doc", tenant, id, store.WriteOpts{})
			case 1:
				_ = writer.Create(ctx, &store.Record{Kind: "doc", Tenant: tenant, ID: fmt.Sprintf("n%d", i),
					Fields: fields(i + 1), Data: json.RawMessage(`{}`)}, store.WriteOpts{})
			default:
				if rec, err := writer.Get(ctx, "doc", tenant, id); err == nil {
					rec.Fields = fields(i + 2)
					_ = writer.Update(ctx, rec, store.WriteOpts{})
				}
			}
		}
	}()
	var replicas sync.WaitGroup
	for range 2 {
		replicas.Add(1)
		go func() {
			defer replicas.Done()
			s, err := redisstore.Open(ctx, r.URL(), redisstore.Options{KeyPrefix: prefix, Indexes: ixs})
			if assert.NoError(t, err) {
				s.Close()
			}
		}()
	}
	replicas.Wait()
	close(done)
	wg.Wait()

	for tn := range 3 {
		tenant := fmt.Sprintf("t%d", tn)
		page, err := writer.List(ctx, store.Query{Kind: "doc", Tenant: tenant})
		require.NoError(t, err)
		for _, f := range []string{"a", "b"} {
			var want []string
			for _, rec := range page.Records {
				want = append(want, storekit.EntryKey(rec.Fields[f], rec.Seq)+rec.ID)
			}
			slices.Sort(want)
			got, err := rdb.ZRange(ctx, prefix+":{"+tenant+"}:ix:doc:"+f, 0, -1).Result()
			require.NoError(t, err)
			assert.Equal(t, want, got, "index %s of %s", f, tenant)
		}
	}
}

// The pipelined credential check sends the scripts by hash; a server that
// has lost them (a restart without persistence, SCRIPT FLUSH) still
// answers, through the calls that load them again.
func TestGetByUniqueThrottledAfterScriptFlush(t *testing.T) {
	r := testenv.StartRedis(t)
	s := open(t, r.URL(), redisstore.Options{})
	ctx := context.Background()
	require.NoError(t, s.Create(ctx, &store.Record{Kind: "tok", Tenant: "t1", ID: "x1",
		Unique: []string{"hash:aa"}, Data: json.RawMessage(`{}`)}, store.WriteOpts{}))
	opt, err := redis.ParseURL(r.URL())
	require.NoError(t, err)
	admin := redis.NewClient(opt)
	defer admin.Close()
	lim := store.ThrottleRequest{Key: "credential:aa", Rate: 0.001, Burst: 2}
	for i := range 3 {
		require.NoError(t, admin.ScriptFlush(ctx).Err())
		if i == 1 {
			// One script present, the other not: still counted once.
			_, err := s.Throttle(ctx, "credential:other", 1, 1)
			require.NoError(t, err)
		}
		rec, tr, err := s.GetByUniqueThrottled(ctx, "tok", "t1", "hash:aa", lim)
		require.NoError(t, err, "call %d", i)
		require.NoError(t, tr.Err)
		assert.Equal(t, "x1", rec.ID)
		if i < 2 {
			assert.Zero(t, tr.Wait, "call %d is within the burst", i)
		} else {
			assert.Positive(t, tr.Wait, "the third call is over the burst: counted once each")
		}
	}
}

// A Create with an event links it to the head its replica knows; when
// another replica has moved the head meanwhile, nothing is written, the
// event is linked again to the stored head and the create goes through
// once. Creates with events and grouped appends from two replicas, all
// at once, leave one unbroken chain with every event once.
func TestCreateWithEventAcrossReplicas(t *testing.T) {
	r := testenv.StartRedis(t)
	a := open(t, r.URL(), redisstore.Options{})
	b := open(t, r.URL(), redisstore.Options{})
	ctx := context.Background()
	ev := func(n string) json.RawMessage { return json.RawMessage(`{"n":"` + n + `"}`) }
	rec := func(id string) *store.Record {
		return &store.Record{Kind: "k", Tenant: "t1", ID: id, Data: json.RawMessage(`{}`)}
	}
	_, err := a.AppendEvents(ctx, "t1", []json.RawMessage{ev("a1")}) // a knows the head
	require.NoError(t, err)
	_, err = b.AppendEvents(ctx, "t1", []json.RawMessage{ev("b1")}) // and b moves it
	require.NoError(t, err)
	require.NoError(t, a.Create(ctx, rec("x"), store.WriteOpts{Event: ev("x")}))
	got, err := b.Get(ctx, "k", "t1", "x")
	require.NoError(t, err)
	assert.EqualValues(t, 1, got.Version)

	var wg sync.WaitGroup
	const each = 40
	for w, s := range []*redisstore.Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := fmt.Sprintf("w%d-%d", w, i)
				if i%2 == 0 {
					assert.NoError(t, s.Create(ctx, rec(n), store.WriteOpts{Event: ev(n)}))
				} else {
					_, err := s.AppendEvents(ctx, "t1", []json.RawMessage{ev(n)})
					assert.NoError(t, err)
				}
			}
		}()
	}
	wg.Wait()
	evs, err := a.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	seen := map[string]int{}
	for _, e := range evs {
		var v struct{ N string }
		require.NoError(t, json.Unmarshal(e.Data, &v))
		seen[v.N]++
	}
	assert.Len(t, evs, 3+4*each)
	for n, c := range seen {
		assert.Equal(t, 1, c, n)
	}
	_, err = store.VerifyChain(evs, "", 0)
	assert.NoError(t, err)
	seq, hash, err := a.EventHead(ctx, "t1")
	require.NoError(t, err)
	assert.Equal(t, evs[len(evs)-1].Seq, seq)
	assert.Equal(t, evs[len(evs)-1].Hash, hash)
}
