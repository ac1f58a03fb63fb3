// Package chaos proves hsmcad's crash consistency: a mixed workload of every
// API family runs against the real daemon binary, which is killed with
// SIGKILL at random moments while requests are in flight and restarted on the
// same store and token. After every kill it checks that
//
//   - every quota counter equals the records it counts (store, daemon down);
//   - each tenant's event hash chain verifies (`hsmca events verify`), and
//     every request answered 2xx has its event record in the log;
//   - once the start-up reconciler has run (/readyz 200), every key object
//     on the token is owned by a committed record, and every record's key
//     is there;
//   - every resource whose creation was acknowledged still exists and is
//     intact: the same object, in the state last acknowledged or one an
//     unanswered operation may have produced.
package chaos

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/store"
)

// Options configure a run.
type Options struct {
	Target  *Target
	Store   *config.Config // the daemon's store settings, to open it while it is down
	Token   Token          // the daemon's token, to list its objects
	Tenant  string
	Kills   int
	Workers int
	// Each round runs the workload for a random time in [MinRun, MaxRun]
	// before the kill.
	MinRun, MaxRun time.Duration
	PCA            bool // drive the private CA family too
	// Fault, when set, breaks a component in each round while the
	// workload runs and the daemon stays up (kills the p11-kit server in
	// front of the token, or the Redis master under Sentinel) and returns
	// what brings it back. The fault lasts Outage; then the daemon must
	// serve again without a restart (/readyz 200, and no 5xx for the rest
	// of the round) before the round ends with the usual kill and checks.
	// FaultEvery > 1 injects it in every FaultEvery-th round only.
	Fault      func() (restore func())
	Outage     time.Duration
	FaultEvery int
	Seed       uint64
	Logf       func(format string, args ...any)
}

// Report is what a run did and found.
type Report struct {
	Kills       int
	Duration    time.Duration
	InFlight    []int // requests in flight at each kill
	Stats       map[string]int
	Violations  []string
	Unexpected  []string // 5xx answers while the daemon was up
	Resources   int      // resources known at the end
	LeftIntents []int    // intents found in the store after each kill
	// Remnants counts the empty object shells SoftHSM2's file store was
	// left with (no id, no label, no key material) at the last check.
	Remnants int
	// Recoveries is, for each fault, the time from the component's return
	// to the daemon's /readyz answering 200.
	Recoveries []time.Duration
	// FaultSpans is, for each fault, the time from its start to /readyz
	// answering 200 again.
	FaultSpans []time.Duration
	// OutageAnswers counts, by status, the answers given while the component was
	// away (503 is expected; none may be a 500).
	OutageAnswers map[int]int
}

func storeQuery(kind, tenant string) store.Query { return store.Query{Kind: kind, Tenant: tenant} }

// countingTransport counts requests in flight.
type countingTransport struct {
	base     http.RoundTripper
	inFlight atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	return c.base.RoundTrip(r)
}

// Run creates an API token, then kills and restarts the daemon o.Kills
// times, checking the invariants after each restart.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.MaxRun < o.MinRun {
		o.MaxRun = o.MinRun
	}
	began := time.Now()
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed+1))
	t := o.Target
	secret, err := t.cli("token", "create", "--tenant", o.Tenant, "--role", "admin")
	if err != nil {
		return nil, err
	}
	ct := &countingTransport{base: &http.Transport{MaxIdleConnsPerHost: o.Workers * 2}}
	client := &Client{Base: "http://" + t.Addr, Token: strings.TrimSpace(secret),
		HTTP: &http.Client{Transport: ct, Timeout: 30 * time.Second}}
	w := newWorkload(o.Tenant, client, o.PCA)
	rep := &Report{}
	var owned map[string]string

	for round := 0; ; round++ {
		p, err := t.start(ctx)
		if err != nil {
			return rep, fmt.Errorf("round %d: %w", round, err)
		}
		if owned != nil {
			objs, err := ListObjects(o.Token)
			if err != nil {
				p.kill()
				return rep, err
			}
			bad, remnants := CheckHSM(objs, owned)
			rep.Remnants = remnants
			for _, v := range bad {
				rep.Violations = append(rep.Violations, fmt.Sprintf("after kill %d: %s", round, v))
			}
		}
		for _, v := range w.checkAPI(ctx) {
			rep.Violations = append(rep.Violations, fmt.Sprintf("after kill %d: %s", round, v))
		}
		if round == o.Kills || len(rep.Violations) > 0 || ctx.Err() != nil {
			p.kill()
			break
		}

		w.round.Store(int64(round))
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for i := 0; i < o.Workers; i++ {
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				w.worker(wctx, seed)
			}(rng.Uint64())
		}
		run := o.MinRun
		if o.MaxRun > o.MinRun {
			run += time.Duration(rng.Int64N(int64(o.MaxRun - o.MinRun)))
		}
		time.Sleep(run)
		if o.Fault != nil && (o.FaultEvery <= 1 || round%o.FaultEvery == o.FaultEvery-1) {
			w.faulted.Store(true)
			faultBegan := time.Now()
			restore := o.Fault()
			time.Sleep(o.Outage)
			restore()
			back := time.Now()
			if err := waitReady(ctx, client, 2*time.Minute); err != nil {
				rep.Violations = append(rep.Violations, fmt.Sprintf("round %d: the daemon did not serve again after the fault ended: %v", round+1, err))
			}
			rep.Recoveries = append(rep.Recoveries, time.Since(back))
			rep.FaultSpans = append(rep.FaultSpans, time.Since(faultBegan))
			o.Logf("fault %d: away %s, /readyz 200 %s after its return, %s after it began", round+1, o.Outage,
				time.Since(back).Round(time.Millisecond), time.Since(faultBegan).Round(time.Millisecond))
			// Requests begun while the component was away may still answer
			// 503 (one waiting for a replica's acknowledgement, say): so may
			// any sent before the fault is over for the workload.
			time.Sleep(time.Second)
			w.faultOver.Store(time.Now().UnixNano())
			w.faulted.Store(false)
			time.Sleep(run)
		}
		// Kill while the daemon is busy: wait (briefly) for several
		// requests to be in flight at once.
		for deadline := time.Now().Add(2 * time.Second); ct.inFlight.Load() < int64(o.Workers/2) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		inFlight := int(ct.inFlight.Load())
		w.dead.Store(true)
		p.kill()
		stop()
		wg.Wait()
		w.dead.Store(false)
		rep.Kills++
		rep.InFlight = append(rep.InFlight, inFlight)

		w.mu.Lock()
		acked := maps.Clone(w.acked)
		w.mu.Unlock()
		ss, bad, err := checkStore(ctx, o.Store, o.Tenant, acked)
		if err != nil {
			return rep, fmt.Errorf("after kill %d: %w", round+1, err)
		}
		for _, v := range bad {
			rep.Violations = append(rep.Violations, fmt.Sprintf("after kill %d: %s", round+1, v))
		}
		owned = ss.Owned
		rep.LeftIntents = append(rep.LeftIntents, ss.Intents)
		if out, err := t.cli("events", "verify", "--all"); err != nil {
			rep.Violations = append(rep.Violations, fmt.Sprintf("after kill %d: event chain: %v", round+1, err))
		} else if !strings.Contains(out, "all intact") {
			rep.Violations = append(rep.Violations, fmt.Sprintf("after kill %d: event chain: %s", round+1, out))
		}
		o.Logf("kill %d: %d requests in flight, %d intents left, %d resources known, %d keys owned",
			round+1, inFlight, ss.Intents, len(w.model.all("")), len(ss.Owned))
	}
	rep.Duration = time.Since(began)
	w.mu.Lock()
	rep.Stats = w.stats
	rep.OutageAnswers = w.outage
	rep.Unexpected = append([]string(nil), w.unexpected...)
	w.mu.Unlock()
	rep.Resources = len(w.model.all(""))
	return rep, nil
}

// Summary renders the operation counts, one "op status count" per line.
func (r *Report) Summary() string {
	keys := make([]string, 0, len(r.Stats))
	for k := range r.Stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-28s %d\n", k, r.Stats[k])
	}
	return b.String()
}

// waitReady polls /readyz until it answers 200.
func waitReady(ctx context.Context, c *Client, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		r := c.Do(ctx, "GET", "/readyz", nil)
		if r.Err == nil && r.Status == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			if r.Err != nil {
				return r.Err
			}
			return fmt.Errorf("/readyz still answers %d after %s: %s", r.Status, limit, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
