package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/chaos"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer/keys"
	"github.com/hsmca/hsmca/store"
)

// Two daemons on a Sentinel deployment (one master, two replicas, three
// sentinels) create keys (a quota, events) while the master is
// SIGKILLed: Sentinel promotes a replica, the daemons follow it without a
// restart, and every key they acknowledged is there afterwards, the
// quota counter equals the records and the event chain verifies.
func TestReplicasRideOutSentinelFailover(t *testing.T) {
	tok := testenv.NewToken(t)
	sen := testenv.StartSentinel(t)
	cfg := noRateLimit(testConfig(t, tok))
	cfg.Store.Backend = "redis"
	cfg.Store.Redis.Mode, cfg.Store.Redis.MasterName, cfg.Store.Redis.Addrs = "sentinel", sen.MasterName, sen.SentinelAddrs()
	cfg.Quotas = map[string]int64{keys.QuotaKeys: 100000}
	// A shared machine under -race can hold a replica's acknowledgement
	// past the default 500ms.
	cfg.Store.Redis.WaitTimeout = 5 * time.Second
	a, _ := startDaemon(t, cfg, nil)
	cfg2 := *cfg
	cfg2.DataDir = t.TempDir()
	cfg2.AdminSocket = filepath.Join(cfg2.DataDir, "admin.sock")
	b, _ := startDaemon(t, &cfg2, nil)
	for _, d := range []*Daemon{a, b} {
		waitStatus(t, "http://"+d.Addr()+"/readyz", 200, 30*time.Second)
	}
	const tenant = "failover"
	ca := newClient(t, a, tenant)
	clients := []*apiClient{ca, on(b, ca), ca, on(b, ca)}

	var (
		mu       sync.Mutex
		acked    []string
		failed   atomic.Int64
		killedAt atomic.Int64
		after    atomic.Int64
		firstOK  = make([]atomic.Int64, len(clients))
	)
	done := make(chan struct{})
	errc := make(chan error, len(clients))
	var wg sync.WaitGroup
	for w, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					errc <- nil
					return
				default:
				}
				r := c.do("POST", "/v1/keys", map[string]any{"algorithm": "EC256"})
				switch {
				case r.err == nil && r.status == 201:
					mu.Lock()
					acked = append(acked, r.m()["id"].(string))
					mu.Unlock()
					if killedAt.Load() != 0 {
						after.Add(1)
						firstOK[w].CompareAndSwap(0, time.Now().UnixNano())
					}
				case r.err == nil && r.status == 503:
					failed.Add(1)
					time.Sleep(20 * time.Millisecond)
				default:
					errc <- fmt.Errorf("create key: %d %v %s", r.status, r.err, r.body)
					return
				}
			}
		}()
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	require.Eventually(t, func() bool { return count() >= 40 }, 30*time.Second, 10*time.Millisecond)
	kill := time.Now()
	killedAt.Store(kill.UnixNano())
	old := sen.KillMaster(t).Addr
	now := sen.WaitFailover(t, old, testenv.FailoverWait)
	require.Eventually(t, func() bool {
		for w := range firstOK {
			if firstOK[w].Load() == 0 {
				return false
			}
		}
		return after.Load() >= 40
	}, 30*time.Second, 10*time.Millisecond)
	close(done)
	wg.Wait()
	for range clients {
		require.NoError(t, <-errc)
	}
	var recover time.Duration
	for w := range firstOK {
		recover = max(recover, time.Duration(firstOK[w].Load()-kill.UnixNano()))
	}
	t.Logf("master %s killed, %s promoted; both daemons answered 201 again within %s of the kill; %d requests answered 503 (each tried again 20ms later); %d keys acknowledged",
		old, now, recover.Round(time.Millisecond), failed.Load(), len(acked))

	lost := 0
	for _, id := range acked {
		for _, c := range clients[:2] {
			if r := c.do("GET", "/v1/keys/"+id, nil); r.status != 200 {
				lost++
				t.Errorf("acknowledged key %s: %d %s", id, r.status, r.body)
			}
		}
	}
	assert.Zero(t, lost, "acknowledged keys lost")
	ctx := context.Background()
	_, bad, err := chaos.CheckStore(ctx, a.store, tenant)
	require.NoError(t, err)
	assert.Empty(t, bad, "quota counters equal the records")
	evs, err := b.store.ListEvents(ctx, tenant, 0, 0)
	require.NoError(t, err)
	broken, err := store.VerifyChain(evs, "", 0)
	require.NoError(t, err)
	assert.Zero(t, broken)
	assert.GreaterOrEqual(t, len(evs), len(acked), "an event per key at least")
}
