package signer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/store/boltstore"
)

// value reads a counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func testPool(cfg HeavyWork) *heavyPool { return newHeavyPool(cfg, metrics.New("test")) }

// waitQueued blocks until n operations of tenant wait in p. It waits for a
// state, it measures no time.
func waitQueued(t *testing.T, p *heavyPool, tenant string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.queues[tenant]) == n
	}, time.Minute, time.Millisecond)
}

// concurrency counts, through the pool's hook, how many operations of
// each tenant and in all run at once, and the most ever seen.
type concurrency struct {
	mu               sync.Mutex
	now, most        map[string]int
	total, mostTotal int
	kinds            []HeavyKind
}

func newConcurrency() *concurrency {
	return &concurrency{now: map[string]int{}, most: map[string]int{}}
}

func (c *concurrency) hook(kind HeavyKind, tenant string) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now[tenant]++
	c.total++
	c.most[tenant] = max(c.most[tenant], c.now[tenant])
	c.mostTotal = max(c.mostTotal, c.total)
	c.kinds = append(c.kinds, kind)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.now[tenant]--
		c.total--
	}
}

// One tenant never runs two heavy operations at once, whatever the
// pool's size; the pool never runs more than its size.
func TestHeavyPoolOneOperationPerTenant(t *testing.T) {
	for _, size := range []int{1, 3} {
		p := testPool(HeavyWork{Concurrency: size, TenantQueue: 64, MaxWait: time.Minute})
		c := newConcurrency()
		p.hook = c.hook
		var wg sync.WaitGroup
		for i := range 24 {
			tenant := []string{"a", "b", "c", "d"}[i%4]
			wg.Go(func() {
				release, err := p.acquire(context.Background(), tenant, HeavyExportPassword)
				if !assert.NoError(t, err) {
					return
				}
				for range 1000 {
					_ = sha256.Sum256([]byte(tenant))
				}
				release()
			})
		}
		wg.Wait()
		for tenant, n := range c.most {
			assert.Equal(t, 1, n, "size %d: tenant %s ran %d at once", size, tenant, n)
		}
		assert.LessOrEqual(t, c.mostTotal, size)
		assert.Len(t, c.kinds, 24)
		assert.Zero(t, p.running)
		assert.Empty(t, p.queues)
		assert.Empty(t, p.order)
	}
}

// A tenant with a backlog does not starve another: waiting tenants take
// turns, in the order they started to wait.
func TestHeavyPoolTenantsTakeTurns(t *testing.T) {
	p := testPool(HeavyWork{Concurrency: 1, TenantQueue: 8, MaxWait: time.Minute})
	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
	)
	run := func(tenant, name string) {
		wg.Go(func() {
			release, err := p.acquire(context.Background(), tenant, HeavySoftwareRSAKey)
			if !assert.NoError(t, err) {
				return
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			release()
		})
	}
	release, err := p.acquire(context.Background(), "a", HeavySoftwareRSAKey)
	require.NoError(t, err)
	order = append(order, "a1")
	run("a", "a2")
	waitQueued(t, p, "a", 1)
	run("a", "a3")
	waitQueued(t, p, "a", 2)
	run("a", "a4")
	waitQueued(t, p, "a", 3)
	run("b", "b1")
	waitQueued(t, p, "b", 1)
	run("c", "c1")
	waitQueued(t, p, "c", 1)
	run("b", "b2")
	waitQueued(t, p, "b", 2)
	release()
	wg.Wait()
	assert.Equal(t, []string{"a1", "a2", "b1", "c1", "a3", "b2", "a4"}, order)
}

// A waiter that gives up (its request ends, or it waited MaxWait) leaves
// the queue, answers 503 with Retry-After, and takes no slot with it.
func TestHeavyPoolWaiterGivesUp(t *testing.T) {
	p := testPool(HeavyWork{Concurrency: 1, TenantQueue: 2, MaxWait: time.Minute})
	hold, err := p.acquire(context.Background(), "a", HeavyHSMRSAKey)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.acquire(ctx, "b", HeavyHSMRSAKey)
		done <- err
	}()
	waitQueued(t, p, "b", 1)
	cancel()
	err = <-done
	require.Error(t, err)
	e := AsError(err)
	assert.Equal(t, KindUnavailable, e.Kind)
	assert.Equal(t, time.Second, e.RetryAfter)
	assert.ErrorIs(t, err, context.Canceled)
	p.mu.Lock()
	assert.Empty(t, p.queues)
	assert.Empty(t, p.order)
	p.mu.Unlock()
	assert.Equal(t, 1.0, value(t, p.m.HeavyRefused.WithLabelValues(string(HeavyHSMRSAKey), heavyCanceled)))

	// A tenant's waiting line is bounded: past it the answer comes at once.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			release, err := p.acquire(context.Background(), "a", HeavyHSMRSAKey)
			if assert.NoError(t, err) {
				release()
			}
		})
	}
	waitQueued(t, p, "a", 2)
	_, err = p.acquire(context.Background(), "a", HeavyHSMRSAKey)
	assert.Equal(t, KindUnavailable, KindOf(err))
	assert.Contains(t, err.Error(), "of this tenant")
	assert.Equal(t, 1.0, value(t, p.m.HeavyRefused.WithLabelValues(string(HeavyHSMRSAKey), heavyQueueFull)))

	// Another tenant still waits its turn.
	timedOut := testPool(HeavyWork{Concurrency: 1, MaxWait: time.Millisecond})
	holdT, err := timedOut.acquire(context.Background(), "a", HeavyLargeRSASign)
	require.NoError(t, err)
	_, err = timedOut.acquire(context.Background(), "b", HeavyLargeRSASign)
	assert.Equal(t, KindUnavailable, KindOf(err))
	assert.Equal(t, 1.0, value(t, timedOut.m.HeavyRefused.WithLabelValues(string(HeavyLargeRSASign), heavyTimeout)))
	holdT()

	// The slot the canceled waiter never had is not lost: once the holder
	// and a's waiters are done, a new operation runs at once.
	hold()
	hold() // a second release is a no-op
	wg.Wait()
	release, err := p.acquire(context.Background(), "b", HeavyHSMRSAKey)
	require.NoError(t, err)
	assert.Equal(t, 1, p.running)
	release()
	assert.Zero(t, p.running)
	assert.Zero(t, value(t, p.m.HeavyInFlight.WithLabelValues(string(HeavyHSMRSAKey))))
	assert.Zero(t, value(t, p.m.HeavyWaiting.WithLabelValues(string(HeavyHSMRSAKey))))
	assert.Zero(t, value(t, timedOut.m.HeavyWaiting.WithLabelValues(string(HeavyLargeRSASign))))
}

func TestLargeRSAIsHeavy(t *testing.T) {
	bits := func(n int) *rsa.PublicKey {
		return &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), uint(n-1)), E: 65537}
	}
	assert.False(t, largeRSA(bits(4096)))
	assert.True(t, largeRSA(bits(4097)))
	assert.True(t, largeRSA(bits(8192)))
	assert.True(t, isRSAAlgorithm(hsm.RSA2048))
	assert.False(t, isRSAAlgorithm(hsm.EC256))
	assert.False(t, isRSAAlgorithm(hsm.ED25519))
}

// heavyEnv is an engine on SoftHSM and bolt with a heavy-work pool of one.
func heavyEnv(t *testing.T) *Core {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	e := New(Options{Store: st, HSM: h, HeavyWork: HeavyWork{Concurrency: 1, MaxWait: time.Minute}})
	t.Cleanup(func() { e.Close(); st.Close() })
	return e
}

func heavyCaller(tenant string) context.Context {
	return WithCaller(context.Background(), Caller{Tenant: tenant, Principal: "token:" + tenant})
}

// The engine's heavy operations go through the pool, one at a time per
// tenant; light ones of another tenant never wait behind them.
func TestHeavyOperationsOfTheEngine(t *testing.T) {
	e := heavyEnv(t)
	c := newConcurrency()
	e.heavyWork.hook = c.hook
	acme, other := heavyCaller("acme"), heavyCaller("other")

	// RSA keys in the HSM are heavy, EC keys light (the PCA family's
	// heavy operations are tested in signer/pca).
	ecKey, err := e.GenerateKey(other, "other", "test_key", "ec", hsm.EC256)
	require.NoError(t, err)
	assert.Empty(t, c.kinds, "EC keys are light")
	rsaKey, err := e.GenerateKey(other, "other", "test_key", "rsa", hsm.RSA2048)
	require.NoError(t, err)
	assert.Equal(t, []HeavyKind{HeavyHSMRSAKey}, c.kinds)

	// While acme holds the only slot, and another of its heavy
	// operations waits, the other tenant's light work goes on.
	hold, err := e.heavyWork.acquire(acme, "acme", HeavyExportPassword)
	require.NoError(t, err)
	queued := make(chan HeavyKind, 4)
	e.heavyWork.queued = func(k HeavyKind, _ string) { queued <- k }
	created := make(chan error, 1)
	go func() {
		_, err := e.GenerateKey(acme, "acme", "test_key", "rsa2", hsm.RSA2048)
		created <- err
	}()
	assert.Equal(t, HeavyHSMRSAKey, <-queued)
	digest := make([]byte, 32)
	for _, k := range []*NewKey{ecKey, rsaKey} {
		release, err := e.SignTurn(other, "other", k.Signer.Public())
		require.NoError(t, err, "a light signature of another tenant runs while the pool is full")
		sig, err := k.Signer.Sign(rand.Reader, digest, crypto.SHA256)
		release()
		require.NoError(t, err)
		assert.NotEmpty(t, sig)
	}
	assert.Empty(t, queued, "no light operation waited")
	hold()
	require.NoError(t, <-created)

	// A signature with an RSA key over 4096 bits is heavy (the keys API
	// signs with imported ones through SignTurn).
	large := &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 4607), E: 65537}
	hold, err = e.heavyWork.acquire(other, "other", HeavyExportPassword)
	require.NoError(t, err)
	signed := make(chan error, 1)
	go func() {
		release, err := e.SignTurn(other, "other", large)
		if err == nil {
			release()
		}
		signed <- err
	}()
	assert.Equal(t, HeavyLargeRSASign, <-queued)
	hold()
	require.NoError(t, <-signed)
	assert.Equal(t, HeavyLargeRSASign, c.kinds[len(c.kinds)-1])

	m := value(t, e.metrics.HeavyInFlight.WithLabelValues(string(HeavyLargeRSASign)))
	assert.Zero(t, m)
}
