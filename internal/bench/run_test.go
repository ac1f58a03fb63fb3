package bench_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/bench"
	"github.com/hsmca/hsmca/internal/chaos"
	"github.com/hsmca/hsmca/internal/testenv"
)

// benchSetup checks SoftHSM2 and redis-server are there (failing under CI
// when they are not), builds the daemon and returns the module and the
// daemon's binary; the bench makes its own SoftHSM2 configuration.
func benchSetup(t *testing.T) (module, daemonBin string) {
	t.Helper()
	module = testenv.SoftHSMModule()
	if module == "" {
		testenv.Missing(t, "SoftHSM2 (apt-get install softhsm2)")
	}
	testenv.StartRedis(t) // fails under CI when redis-server is missing
	daemonBin, _, err := chaos.Build(t.TempDir())
	require.NoError(t, err)
	t.Setenv("SOFTHSM2_CONF", "")
	return module, daemonBin
}

// The short version of `make bench`: every store backend, a fraction of a
// second per row, the report rendered. It proves the bench runs (figures
// come from `make bench`, never from here).
func TestBenchShort(t *testing.T) {
	module, daemonBin := benchSetup(t)
	stores := []string{"bolt", "redis", bench.StoreSentinel, bench.StoreSentinelNoWait, bench.StoreCluster}
	cfg := bench.Config{Hsmcad: daemonBin, Module: module, Stores: stores,
		Phase:       bench.Phase{Warmup: 100 * time.Millisecond, Duration: 300 * time.Millisecond},
		Concurrency: []int{1, 4}, InProc: []int{1}, WorkDir: t.TempDir()}
	rows, err := bench.Run(context.Background(), cfg)
	require.NoError(t, err)
	for _, s := range stores {
		for _, op := range []string{bench.OpIssue, bench.OpSign} {
			n := 0
			for _, r := range rows {
				if r.Store == s && r.Op == op {
					n++
					assert.Positive(t, r.Ops, "%s %s at %d", s, op, r.Concurrency)
					assert.Zero(t, r.Errors, "%s %s at %d: %s", s, op, r.Concurrency, r.FirstError)
					// The redis-server the bench started is measured beside
					// the daemon; the replicated stores' servers are not.
					if s == "redis" {
						assert.Positive(t, r.StoreCPUPerOp, "%s %s at %d: redis-server's CPU", s, op, r.Concurrency)
					} else {
						assert.Zero(t, r.StoreCPUPerOp, "%s %s at %d", s, op, r.Concurrency)
					}
				}
			}
			assert.Equal(t, 2, n, "%s %s: a row per concurrency", s, op)
		}
	}
	// At one connection the daemon's own metrics say where the time went.
	for _, r := range rows {
		if r.Op != bench.OpIssue && r.Op != bench.OpSign {
			continue
		}
		if r.Concurrency != 1 {
			assert.Nil(t, r.Inside, "%s %s at %d", r.Store, r.Op, r.Concurrency)
			continue
		}
		if !assert.NotNil(t, r.Inside, "%s %s at 1", r.Store, r.Op) {
			continue
		}
		in := r.Inside
		route := map[string]string{bench.OpIssue: "/v1/private-certificates/csr", bench.OpSign: "/v1/keys/:id/sign"}[r.Op]
		assert.Equal(t, route, in.Route, "%s %s", r.Store, r.Op)
		assert.Positive(t, in.Requests, "%s %s", r.Store, r.Op)
		assert.Positive(t, in.Mean, "%s %s", r.Store, r.Op)
		names := map[string]bool{}
		var sum time.Duration
		for _, p := range in.Parts {
			names[p.Name] = true
			sum += p.Mean
		}
		assert.True(t, names["HSM C_Sign"], "%s %s: %v", r.Store, r.Op, in.Parts)
		if r.Store == "bolt" || r.Store == bench.StoreCluster {
			// Elsewhere (Redis without slots) the check goes in the
			// script of the request's first write, and has no part. On
			// bolt a token known lately is checked by its guard alone.
			assert.True(t, names["store get_by_unique_throttled"] || names["store check_guard"],
				"%s %s: the credential check: %v", r.Store, r.Op, in.Parts)
		}
		write := map[string]string{bench.OpIssue: "store create", bench.OpSign: "store append_events"}[r.Op]
		assert.True(t, names[write], "%s %s: %v", r.Store, r.Op, in.Parts)
		assert.Equal(t, max(in.Mean-sum, 0), in.Rest, "%s %s", r.Store, r.Op)
	}
	for _, s := range stores {
		found := false
		for _, r := range rows {
			if r.Store == s && r.Op == bench.OpHealthz {
				found = true
				assert.Positive(t, r.Ops, "%s healthz", s)
				assert.Zero(t, r.Errors, "%s healthz: %s", s, r.FirstError)
			}
		}
		assert.True(t, found, "%s: the HTTP-alone row beside the 1-connection rows", s)
	}
	var b strings.Builder
	bench.Table(&b, rows)
	bench.Targets(&b, rows, bench.SingleStores(stores), 4)
	bench.ReplicationCost(&b, rows, cfg.Concurrency)
	assert.Contains(t, b.String(), "- sentinel vs sentinel-nowait: "+bench.OpIssue+" at 1: p50 ")
	assert.NotContains(t, b.String(), "- sentinel: ", "no targets for the replicated stores")
}

// With rounds the bench runs each store once per round on tokens and
// stores of the round's own, the stores taking turns at going first, and
// the combined table and targets come from all of them.
func TestBenchRounds(t *testing.T) {
	module, daemonBin := benchSetup(t)
	var log strings.Builder
	stores := []string{"bolt", "redis"}
	cfg := bench.Config{Hsmcad: daemonBin, Module: module, Stores: stores, Ops: []string{"sign"}, Rounds: 2,
		Phase:       bench.Phase{Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond},
		Concurrency: []int{1}, InProc: []int{1}, WorkDir: t.TempDir(), Log: &log}
	rows, err := bench.Run(context.Background(), cfg)
	require.NoError(t, err, log.String())
	var order []string
	for _, r := range rows {
		if r.Op == bench.OpSign {
			assert.Positive(t, r.Ops, "round %d %s", r.Round, r.Store)
			assert.Zero(t, r.Errors, "round %d %s: %s", r.Round, r.Store, r.FirstError)
			order = append(order, fmt.Sprintf("%d %s", r.Round, r.Store))
		}
	}
	assert.Equal(t, []string{"0 bolt", "0 redis", "1 redis", "1 bolt"}, order)
	assert.Contains(t, log.String(), "token bench-bolt-r2,", "the second round's tokens are its own")

	combined := bench.Combine(rows)
	n := 0
	for _, r := range combined {
		if r.Op == bench.OpSign {
			n++
			assert.Equal(t, 2, r.Rounds, r.Store)
		}
	}
	assert.Equal(t, 2, n, "one combined row per store")
	var b strings.Builder
	bench.PerRequestTargets(&b, rows, stores, 1)
	assert.Contains(t, b.String(), "- redis: "+bench.OpSign+" at 1: p50 ")
	assert.Contains(t, b.String(), " of 2 rounds)\n")
}
