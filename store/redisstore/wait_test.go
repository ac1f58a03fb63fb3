package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/redisstore"
)

// Writes wait for replicas: by default one on Sentinel (the master has
// replicas), none on a standalone server; a write fewer replicas confirm
// than asked answers ErrUnavailable (it may or may not be kept).
func TestWaitForReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sen := testenv.StartSentinel(t)
	rec := func(id string) *store.Record {
		return &store.Record{Kind: "k", Tenant: "t1", ID: id, Unique: []string{"name:" + id}, Data: json.RawMessage(`{}`)}
	}
	q := &store.Quota{Resource: "things", Limit: -1}

	dflt := openConn(t, sentinelConn(sen), redisstore.Options{KeyPrefix: "w"})
	n, timeout := dflt.WaitReplicas()
	assert.Equal(t, 1, n)
	assert.Equal(t, 500*time.Millisecond, timeout)
	assert.True(t, dflt.WaitsForAllOnline(), "by default a write waits for every online replica")
	// One replica hangs (online for its master, answering nothing): a
	// write waiting for every online replica is not confirmed, where one
	// waiting for one replica would be.
	resume := sen.Data[2].Pause()
	slow := openConn(t, sentinelConn(sen), redisstore.Options{KeyPrefix: "w", WaitTimeout: slowWait})
	err := slow.Create(ctx, rec("hung"), store.WriteOpts{Quota: q})
	one := openConn(t, sentinelConn(sen), redisstore.Options{KeyPrefix: "w", WaitReplicas: 1, WaitTimeout: slowWait})
	assert.False(t, one.WaitsForAllOnline())
	oneErr := one.Create(ctx, rec("one"), store.WriteOpts{Quota: q})
	resume()
	require.ErrorIs(t, err, store.ErrUnavailable)
	assert.Contains(t, err.Error(), "reached 1 of 2 replicas")
	require.NoError(t, oneErr)
	def := openConn(t, sentinelConn(sen), redisstore.Options{KeyPrefix: "w", WaitTimeout: slowWait})
	require.NoError(t, def.Create(ctx, rec("a"), store.WriteOpts{Quota: q}))
	_, err = def.AppendEvents(ctx, "t1", []json.RawMessage{json.RawMessage(`{"n":1}`)})
	require.NoError(t, err)

	off := openConn(t, sentinelConn(sen), redisstore.Options{KeyPrefix: "w", WaitReplicas: redisstore.NoWait})
	n, _ = off.WaitReplicas()
	assert.Zero(t, n)
	require.NoError(t, off.Create(ctx, rec("b"), store.WriteOpts{Quota: q}))

	// Two replicas exist: three are never confirmed.
	three := openConn(t, sentinelConn(sen), redisstore.Options{KeyPrefix: "w", WaitReplicas: 3, WaitTimeout: 50 * time.Millisecond})
	err = three.Create(ctx, rec("c"), store.WriteOpts{Quota: q})
	require.ErrorIs(t, err, store.ErrUnavailable)
	assert.Contains(t, err.Error(), "of 3 replicas")
	_, err = three.AppendEvents(ctx, "t1", []json.RawMessage{json.RawMessage(`{"n":2}`)})
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, three.PutIntent(ctx, &store.Intent{ID: "i1", Tenant: "t1", Kind: "k"}), store.ErrUnavailable)
	// Written on the master all the same (what a failover would keep is
	// not known); the record and its quota stay in step.
	_, err = def.Get(ctx, "k", "t1", "c")
	require.NoError(t, err)
	usage, err := def.QuotaUsage(ctx, "t1", "things")
	require.NoError(t, err)
	assert.EqualValues(t, 5, usage)
	evs, err := def.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	assert.Len(t, evs, 2, "the unconfirmed append is not made twice")

	r := testenv.StartRedis(t)
	plain := open(t, r.URL(), redisstore.Options{})
	n, _ = plain.WaitReplicas()
	assert.Zero(t, n, "a standalone server has no replicas to wait for")

	// Both replicas down (say, rejoining after a failover) when a store
	// opens: the sentinels still know them, so its writes wait all the
	// same, and answer 503 until a replica is back.
	for _, n := range sen.Data[1:] {
		n.Kill()
	}
	require.Eventually(t, func() bool {
		c := sen.Data[0].Client()
		defer c.Close()
		info, err := c.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "connected_slaves:0")
	}, 10*time.Second, 20*time.Millisecond)
	lone := openConn(t, sentinelConn(sen), redisstore.Options{KeyPrefix: "w", WaitTimeout: 50 * time.Millisecond})
	n, _ = lone.WaitReplicas()
	assert.Equal(t, 1, n, "the sentinels know replicas: writes wait for one")
	require.ErrorIs(t, lone.Create(ctx, rec("d"), store.WriteOpts{Quota: q}), store.ErrUnavailable)
}

// A replica lost while the sentinels vouch for the master: writes wait for
// the replicas left within a second or two. With the sentinels silent (no
// majority answers), the count that fell is held (holdFall) and writes
// answer 503 meanwhile: a master the sentinels may be failing over must not
// have its writes acknowledged by the one replica it has left.
func TestWaitFollowsALostReplica(t *testing.T) {
	ctx := context.Background()
	sen := testenv.StartSentinel(t)
	rec := func(id string) *store.Record {
		return &store.Record{Kind: "k", Tenant: "t1", ID: id, Data: json.RawMessage(`{}`)}
	}
	st := openConn(t, sentinelConn(sen), redisstore.Options{KeyPrefix: "lost", WaitTimeout: slowWait})
	require.NoError(t, st.Create(ctx, rec("before"), store.WriteOpts{}))

	sen.Data[2].Kill()
	n := 0
	require.Eventually(t, func() bool {
		n++
		return st.Create(ctx, rec(fmt.Sprintf("after-%d", n)), store.WriteOpts{}) == nil
	}, 10*time.Second, 100*time.Millisecond, "writes never went on with one replica")

	// The sentinels gone: a second replica loss is held.
	defer redisstore.SetHoldFall(3 * time.Second)()
	held := openConn(t, sentinelConn(sen), redisstore.Options{KeyPrefix: "held", WaitTimeout: time.Second})
	sen.Data[2].Start()
	require.Eventually(t, func() bool {
		n++
		return held.Create(ctx, rec(fmt.Sprintf("two-%d", n)), store.WriteOpts{}) == nil
	}, 15*time.Second, 100*time.Millisecond)
	time.Sleep(2 * time.Second) // both replicas counted online again
	for _, s := range sen.Sentinels {
		s.Kill()
	}
	sen.Data[1].Kill()
	began := time.Now()
	err := held.Create(ctx, rec("held"), store.WriteOpts{})
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.Eventually(t, func() bool {
		n++
		return held.Create(ctx, rec(fmt.Sprintf("late-%d", n)), store.WriteOpts{}) == nil
	}, 15*time.Second, 100*time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(began), 2*time.Second, "the fallen count was not held")
}

// Two stores (two daemon replicas) write records with unique names and a
// quota, and append events, while the Sentinel master is SIGKILLed; a
// replica is promoted and the stores follow it without being opened
// again. Every acknowledged write is there afterwards.
func TestFailoverLosesNoAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	sen := testenv.StartSentinel(t)
	conn := sentinelConn(sen)
	failoverUnderLoad(t, conn, []string{"t1", "t2"}, func(killed func()) string {
		old := sen.KillMaster(t).Addr
		killed()
		return fmt.Sprintf("master %s killed, %s promoted", old, sen.WaitFailover(t, old, testenv.FailoverWait))
	})
}

// The same on a cluster: tenants on every master, the master of one
// SIGKILLed, its replica promoted. The promoted replica has no replica of
// its own, so that master's writes answer 503 until the old master is
// back as its replica.
func TestClusterFailoverLosesNoAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	clu := testenv.StartCluster(t)
	masters, err := clu.Masters()
	require.NoError(t, err)
	// One tenant per master.
	var tenants []string
	seen := map[string]bool{}
	for i := 0; len(tenants) < len(masters) && i < 1000; i++ {
		tn := fmt.Sprint("c", i)
		m := mustMasterOf(t, clu, "cf:{"+tn+"}:x")
		if !seen[m] {
			seen[m] = true
			tenants = append(tenants, tn)
		}
	}
	require.Len(t, tenants, len(masters))
	failoverUnderLoad(t, clusterConn(clu), tenants, func(killed func()) string {
		victim := mustMasterOf(t, clu, "cf:{"+tenants[0]+"}:x")
		slots, err := clu.SlotsOf(victim)
		require.NoError(t, err)
		dead := clu.KillMaster(t, victim)
		killed()
		now := clu.WaitPromotion(t, victim, slots, testenv.FailoverWait)
		dead.Start()
		return fmt.Sprintf("master %s killed, %s promoted, %s back as its replica", victim, now, victim)
	})
}

// failoverUnderLoad runs two stores on conn, each with a writer per
// tenant, calls fail once some work is acknowledged (fail calls killed the
// moment the master is dead), waits for every
// writer to be acknowledged again, and checks what was acknowledged.
func failoverUnderLoad(t *testing.T, conn redisstore.Conn, tenants []string, fail func(killed func()) string) {
	ctx := context.Background()
	stores := []*redisstore.Store{
		openConn(t, conn, redisstore.Options{KeyPrefix: "cf", WaitTimeout: slowWait}),
		openConn(t, conn, redisstore.Options{KeyPrefix: "cf", WaitTimeout: slowWait}),
	}
	q := &store.Quota{Resource: "things", Limit: -1}
	workers := 2 * len(tenants)

	type acked struct {
		tenant, id string
	}
	var (
		mu       sync.Mutex
		records  []acked
		events   = map[string][]store.Event{}
		failed   atomic.Int64
		killedAt atomic.Int64 // unix nanos, 0 before the kill
		after    atomic.Int64 // writes acknowledged after the kill
		firstOK  = make([]atomic.Int64, workers)
		next     atomic.Int64
	)
	done := make(chan struct{})
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%2]
			tn := tenants[w/2]
			var started bool
			ok := func() {
				// A write sent after the kill.
				if started {
					after.Add(1)
					firstOK[w].CompareAndSwap(0, time.Now().UnixNano())
				}
			}
			for {
				select {
				case <-done:
					errc <- nil
					return
				default:
				}
				started = killedAt.Load() != 0
				i := next.Add(1)
				id := fmt.Sprint("r", i)
				err := s.Create(ctx, &store.Record{Kind: "k", Tenant: tn, ID: id, Unique: []string{fmt.Sprint("name:", i)},
					Data: json.RawMessage(`{}`)}, store.WriteOpts{Quota: q})
				switch {
				case err == nil:
					mu.Lock()
					records = append(records, acked{tn, id})
					mu.Unlock()
					ok()
				case errors.Is(err, store.ErrUnavailable):
					failed.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				default:
					errc <- fmt.Errorf("create %s: %w", id, err)
					return
				}
				evs, err := s.AppendEvents(ctx, tn, []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"r":%d}`, i))})
				switch {
				case err == nil:
					mu.Lock()
					events[tn] = append(events[tn], evs...)
					mu.Unlock()
					ok()
				case errors.Is(err, store.ErrUnavailable):
					failed.Add(1)
					time.Sleep(10 * time.Millisecond)
				default:
					errc <- fmt.Errorf("append %s: %w", tn, err)
					return
				}
			}
		}()
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(records)
	}
	require.Eventually(t, func() bool { return count() >= 200 }, 30*time.Second, 10*time.Millisecond)
	var kill time.Time
	what := fail(func() {
		kill = time.Now()
		killedAt.Store(kill.UnixNano())
	})
	require.Eventually(t, func() bool {
		for w := range firstOK {
			if firstOK[w].Load() == 0 {
				return false
			}
		}
		return after.Load() >= 200
	}, 30*time.Second, 10*time.Millisecond)
	close(done)
	wg.Wait()
	for range workers {
		require.NoError(t, <-errc)
	}
	var recover time.Duration
	for w := range firstOK {
		recover = max(recover, time.Duration(firstOK[w].Load()-kill.UnixNano()))
	}
	nev := 0
	for _, e := range events {
		nev += len(e)
	}
	t.Logf("%s; every writer acknowledged again within %s of the kill; %d write attempts failed (503, each tried again 10ms later); %d records and %d events acknowledged",
		what, recover.Round(time.Millisecond), failed.Load(), len(records), nev)

	// A store opened now sees what the running ones acknowledged.
	s := openConn(t, conn, redisstore.Options{KeyPrefix: "cf"})
	lost := 0
	for _, r := range records {
		got, err := s.Get(ctx, "k", r.tenant, r.id)
		if errors.Is(err, store.ErrNotFound) {
			lost++
			continue
		}
		require.NoError(t, err)
		byName, err := s.GetByUnique(ctx, "k", r.tenant, "name:"+r.id[1:])
		require.NoError(t, err)
		assert.Equal(t, got.ID, byName.ID)
		err = s.Create(ctx, &store.Record{Kind: "k", Tenant: r.tenant, ID: "dup" + r.id, Unique: []string{"name:" + r.id[1:]},
			Data: json.RawMessage(`{}`)}, store.WriteOpts{Quota: q})
		require.ErrorIs(t, err, store.ErrExists, "the unique name %s holds", r.id[1:])
	}
	assert.Zero(t, lost, "acknowledged records lost")
	for _, tn := range tenants {
		n, err := s.CountRecords(ctx, "k", tn)
		require.NoError(t, err)
		usage, err := s.QuotaUsage(ctx, tn, "things")
		require.NoError(t, err)
		assert.Equal(t, n, usage, "quota of %s equals its records", tn)
		chain, err := s.ListEvents(ctx, tn, 0, 0)
		require.NoError(t, err)
		broken, err := store.VerifyChain(chain, "", 0)
		require.NoError(t, err)
		assert.Zero(t, broken)
		bySeq := map[uint64]string{}
		for _, e := range chain {
			bySeq[e.Seq] = e.Hash
		}
		for _, e := range events[tn] {
			assert.Equal(t, e.Hash, bySeq[e.Seq], "acknowledged event %d of %s", e.Seq, tn)
		}
	}
}
