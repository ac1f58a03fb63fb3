package daemon

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/testenv"
)

// fakeProcs is a tuner on a fake runtime and clock: procs is what
// GOMAXPROCS would be.
func fakeProcs() (*procTuner, *int, *time.Time) {
	procs, now := 2, time.Unix(1000, 0)
	p := &procTuner{calm: time.Second, tick: 250 * time.Millisecond,
		setOne: func() { procs = 1 }, setDefault: func() { procs = 2 },
		now: func() time.Time { return now }}
	p.busy.Store(now.UnixNano())
	return p, &procs, &now
}

// idleTicks is n ticks of tick with no long wait.
func idleTicks(p *procTuner, now *time.Time, tick time.Duration) func(n int) {
	return func(n int) {
		for range n {
			*now = now.Add(tick)
			p.check(0)
		}
	}
}

// One request at a time: one processor after calm. A second request
// under way brings them back before it is served; a goroutine that waited
// for the one processor (background work) brings them back at the next
// tick; neither goes down again before calm.
func TestProcTunerFollowsTheLoad(t *testing.T) {
	p, procs, now := fakeProcs()
	p.users = 1
	tick := 250 * time.Millisecond
	idle := idleTicks(p, now, tick)
	idle(3)
	assert.Equal(t, 2, *procs, "not before a second of calm")
	idle(1)
	assert.Equal(t, 1, *procs)

	// A second request arrives while one is served.
	first, second := make(chan struct{}), make(chan int)
	h := p.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			<-first
			return
		}
		second <- *procs
	}))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/first", nil))
	}()
	require.Eventually(t, func() bool { return p.inflight.Load() == 1 }, 5*time.Second, time.Millisecond)
	go h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/second", nil))
	assert.Equal(t, 2, <-second, "served on every processor")
	close(first)
	wg.Wait()
	idle(3)
	assert.Equal(t, 2, *procs, "calm starts again")
	idle(1)
	assert.Equal(t, 1, *procs)

	// A goroutine waited for the one processor.
	*now = now.Add(tick)
	p.check(1)
	assert.Equal(t, 2, *procs)
	idle(3)
	assert.Equal(t, 2, *procs)
	idle(1)
	assert.Equal(t, 1, *procs)
}

// Background work (the bolt store's journal copy) has every processor
// while it runs, and they go down again as it ends, unless a request or a
// long wait kept them up within calm; nothing goes down while it runs, nor
// once the daemons have ended.
func TestProcTunerHoldsForBackgroundWork(t *testing.T) {
	p, procs, now := fakeProcs()
	p.users = 1
	tick := 250 * time.Millisecond
	idle := idleTicks(p, now, tick)
	idle(4)
	require.Equal(t, 1, *procs)

	release := p.hold()
	assert.Equal(t, 2, *procs, "up before the work starts")
	idle(8)
	assert.Equal(t, 2, *procs, "not down while it runs")
	other := p.hold()
	release()
	assert.Equal(t, 2, *procs, "another is still running")
	other()
	assert.Equal(t, 1, *procs, "down at once as the last ends")

	// A long wait during the work: the processors stay up for calm.
	release = p.hold()
	*now = now.Add(tick)
	p.check(1)
	release()
	assert.Equal(t, 2, *procs)
	idle(3)
	assert.Equal(t, 2, *procs)
	idle(1)
	assert.Equal(t, 1, *procs)

	// After the last daemon ended the default stays.
	p.users = 0
	p.raise()
	release = p.hold()
	release()
	assert.Equal(t, 2, *procs)
}

// The runtime's count of long waits is read.
func TestLongWaitsReads(t *testing.T) {
	before := longWaits()
	assert.GreaterOrEqual(t, longWaits(), before)
}

// Daemons of one process share the tuner: the last to stop gives the
// processors back.
func TestProcTunerUsers(t *testing.T) {
	p, procs, _ := fakeProcs()
	p.waits = func() uint64 { return 0 }
	p.start()
	p.start()
	p.low.Store(true)
	*procs = 1
	p.end()
	assert.Equal(t, 1, *procs)
	p.end()
	assert.Equal(t, 2, *procs)
	assert.False(t, p.low.Load())
}

func TestIdleOneProcSetting(t *testing.T) {
	on, off := true, false
	redis := func(v *bool) *config.Config {
		c := &config.Config{IdleOneProc: v}
		c.Store.Backend = "redis"
		return c
	}
	bolt := func(v *bool) *config.Config {
		c := &config.Config{IdleOneProc: v}
		c.Store.Backend = "bolt"
		return c
	}
	assert.True(t, idleOneProc(redis(nil)), "on by default with Redis")
	assert.False(t, idleOneProc(bolt(nil)), "off by default with bolt")
	assert.False(t, idleOneProc(redis(&off)))
	assert.False(t, idleOneProc(bolt(&off)))
	assert.True(t, idleOneProc(bolt(&on)))
	t.Setenv("GOMAXPROCS", "2")
	assert.False(t, idleOneProc(redis(&on)), "the environment's GOMAXPROCS is the operator's choice")
}

// A daemon runs on one processor while it serves one request at a time,
// and on all of them while requests overlap; by default on Redis, and on
// bolt when set.
func TestDaemonTunesProcs(t *testing.T) {
	t.Run("bolt", func(t *testing.T) {
		tok := testenv.NewToken(t)
		cfg := testConfig(t, tok)
		on := true
		cfg.IdleOneProc = &on
		daemonTunesProcs(t, cfg)
	})
	t.Run("redis", func(t *testing.T) {
		tok := testenv.NewToken(t)
		r := testenv.StartRedis(t)
		cfg := testConfig(t, tok)
		cfg.Store.Backend = "redis"
		cfg.Store.RedisURL = r.URL()
		daemonTunesProcs(t, cfg)
	})
}

func daemonTunesProcs(t *testing.T, cfg *config.Config) {
	d, _ := startDaemon(t, cfg, nil)
	base := "http://" + d.Addr()
	waitStatus(t, base+"/readyz", 200, 30*time.Second)
	procs := func() string {
		m := regexp.MustCompile(`(?m)^hsmca_go_procs (\d+)$`).FindStringSubmatch(scrape(t, base))
		require.NotNil(t, m)
		return m[1]
	}
	require.Eventually(t, func() bool { return procs() == "1" }, 20*time.Second, 200*time.Millisecond,
		"one processor after a second with one request at a time")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if resp, err := http.Get(base + "/healthz"); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	assert.Eventually(t, func() bool { return procs() != "1" }, 10*time.Second, 50*time.Millisecond,
		"overlapping requests get every processor")
	close(stop)
	wg.Wait()
	require.NoError(t, d.Shutdown(context.Background()))
	assert.Equal(t, runtime.GOMAXPROCS(0), func() int { runtime.SetDefaultGOMAXPROCS(); return runtime.GOMAXPROCS(0) }(),
		"the last daemon to stop gives the processors back")
}
