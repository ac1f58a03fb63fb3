// Package bench measures hsmcad: a closed-loop HTTP load client, the
// in-process limits of the HSM (the same token and key, no HTTP, no
// store), the orchestration that starts the daemon on a fresh SoftHSM2
// token once per store backend, and the seeding of large stores. `hsmca
// bench` and `make bench` drive it.
package bench

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Result is one measured row.
type Result struct {
	Op          string
	Store       string
	Concurrency int
	Ops         int // completed in the measured window
	Errors      int
	FirstError  string
	Elapsed     time.Duration
	P50, P99    time.Duration
	Max         time.Duration // the slowest operation of the window
	RSS         int64         // peak server RSS in bytes during the window; 0 when not measured
	RSSAnon     int64         // peak of its anonymous part (no mapped file pages)
	CPUPerOp    time.Duration // server CPU time per operation in the window; 0 when not measured
	// ClientCPUPerOp is the load client's CPU time per operation (this
	// process, over the same window); 0 when not measured.
	ClientCPUPerOp time.Duration
	Ratio          float64 // ops/s over the in-process limit; 0 when none applies
	Limit          string  // the in-process row the ratio refers to
	// Inside is where the daemon's own metrics say the time of the
	// window's requests went; set for daemon rows at one connection.
	Inside *Inside
	// RecordsPerAppend is how many event records the daemon's event
	// writer put in each store append in the window (its own metrics); 0
	// when not known.
	RecordsPerAppend float64
	// StoreCPUPerOp is the CPU time per operation of the redis-server the
	// bench started for the daemon (store redis), over the same window; 0
	// when not measured.
	StoreCPUPerOp time.Duration
	// Round is the round (from 0) that measured the row (Config.Rounds).
	Round int
	// Rounds is how many rounds a row of Combine stands for (0 for a
	// row of one round); P50Range and CPURange are the lowest and the
	// highest of those rounds' figures.
	Rounds             int
	P50Range, CPURange [2]time.Duration
}

// OpsPerSec is the throughput of the measured window.
func (r *Result) OpsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// Phase is how long to warm up and to measure.
type Phase struct {
	Warmup, Duration time.Duration
	// Idle, when set, is how long each goroutine idles before each
	// operation, untimed: the gap a one-connection client leaves.
	Idle time.Duration
}

// work is one operation of a closed loop: it returns an error when the
// operation failed. worker identifies the goroutine (for per-worker state).
type work func(ctx context.Context, worker int) error

// measure runs op in n goroutines, each starting its next operation as
// soon as the last one ended, for p.Warmup (discarded) and then
// p.Duration. Only operations that start inside the measured window count.
// sample, if set, is called every 100ms of the window (RSS polling).
func measure(ctx context.Context, n int, p Phase, op work, sample func()) Result {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg      sync.WaitGroup
		lats    = make([][]time.Duration, n)
		errs    = make([]int, n)
		firstMu sync.Mutex
		first   string
	)
	start := time.Now()
	winStart := start.Add(p.Warmup)
	winEnd := winStart.Add(p.Duration)
	for w := range n {
		lats[w] = make([]time.Duration, 0, 4096)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if p.Idle > 0 {
					pause(p.Idle)
				}
				t0 := time.Now()
				if !t0.Before(winEnd) || ctx.Err() != nil {
					return
				}
				err := op(ctx, w)
				if t0.Before(winStart) {
					continue
				}
				if err != nil {
					errs[w]++
					firstMu.Lock()
					if first == "" {
						first = err.Error()
					}
					firstMu.Unlock()
					continue
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		}()
	}
	if sample != nil {
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-t.C:
					if now.After(winStart) && now.Before(winEnd) {
						sample()
					}
				}
			}
		}()
	}
	wg.Wait()
	var all []time.Duration
	r := Result{Concurrency: n, Elapsed: p.Duration, FirstError: first}
	for w := range n {
		all = append(all, lats[w]...)
		r.Errors += errs[w]
	}
	r.Ops = len(all)
	r.P50, r.P99 = percentile(all, 0.50), percentile(all, 0.99)
	if len(all) > 0 {
		r.Max = all[len(all)-1] // sorted by percentile
	}
	return r
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(float64(len(d))*q+0.5) - 1
	return d[max(0, min(i, len(d)-1))]
}

// client is an HTTP client with enough keep-alive connections for n
// concurrent requests to one host, so that no request pays a dial.
func client(n int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        n + 4,
		MaxIdleConnsPerHost: n + 4,
		MaxConnsPerHost:     n + 4,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// request is one HTTP operation of the load.
type request struct {
	method string
	// path gives the path of one request; it may pick among several.
	path  func(r *rand.Rand) string
	body  []byte
	token string
	want  int
	// onBody, if set, reads the answer (e.g. to collect ids).
	onBody func([]byte)
}
