package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/testenv"
)

func TestMain(m *testing.M) {
	HelperMain()
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce        sync.Once
	binDir           string
	hsmcad, hsmcaCLI string
	buildErr         error
)

func binaries(t testing.TB) (string, string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "hsmca-chaos-bin-")
		if buildErr == nil {
			hsmcad, hsmcaCLI, buildErr = Build(binDir)
		}
	})
	require.NoError(t, buildErr)
	return hsmcad, hsmcaCLI
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDur(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestChaos kills hsmcad with SIGKILL under a mixed workload of every
// family, on bolt and on Redis, and checks the invariants after each
// restart (see the package comment). HSMCA_CHAOS_KILLS (default 20),
// HSMCA_CHAOS_WORKERS (8) and HSMCA_CHAOS_MAX_RUN (1.2s of workload before
// each kill) tune it; `make chaos` runs it long.
func TestChaos(t *testing.T) {
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			runChaos(keepFailures(t), backend)
		})
	}
}

func runChaos(t testing.TB, backend string) {
	tok := testenv.NewToken(t)
	runChaosOn(t, backend, chaosToken{Module: tok.Module, Label: tok.Label, PINFile: tok.PINFile,
		Env: []string{"SOFTHSM2_CONF=" + tok.ConfPath}}, envInt("HSMCA_CHAOS_KILLS", 20), nil)
}

// chaosToken is the token the daemon under test uses.
type chaosToken struct {
	Module, Label, PINFile string
	Env                    []string // what a process loading Module needs
}

// chaosFault configures the faults of a run (see Options.Fault).
type chaosFault struct {
	inject func() (restore func())
	outage time.Duration
	every  int      // inject in every n-th round (0, 1: each round)
	extra  []string // daemon settings for the run
	// sentinel, when set, builds the fault on the run's Sentinel topology
	// (backend "sentinel") instead of inject.
	sentinel func(s *testenv.Sentinel) func() (restore func())
}

// chaosStore starts the store of a backend: bolt (nothing to start),
// redis (one server) or sentinel (a master, two replicas, three
// sentinels). It fills the daemon's and the checks' settings.
func chaosStore(t testing.TB, backend string, cfg *config.Config) (env []string, sen *testenv.Sentinel) {
	switch backend {
	case "redis":
		r := testenv.StartRedis(t)
		cfg.Store.RedisURL = r.URL()
		return []string{"HSMCA_STORE=redis", "HSMCA_REDIS_URL=" + r.URL()}, nil
	case "sentinel":
		sen = testenv.StartSentinel(t)
		cfg.Store.Backend = "redis"
		cfg.Store.Redis.Mode = "sentinel"
		cfg.Store.Redis.Addrs = sen.SentinelAddrs()
		cfg.Store.Redis.MasterName = sen.MasterName
		return []string{"HSMCA_STORE=redis", "HSMCA_REDIS_MODE=sentinel", "HSMCA_REDIS_MASTER_NAME=" + sen.MasterName,
			"HSMCA_REDIS_ADDRS=" + strings.Join(sen.SentinelAddrs(), ","),
			// A replica's acknowledgement can lag past the default 500ms on a
			// loaded test machine; the workload takes a 503 outside a fault
			// for a failure.
			"HSMCA_REDIS_WAIT_TIMEOUT=5s"}, sen
	}
	return []string{"HSMCA_STORE=" + backend}, nil
}

func runChaosOn(t testing.TB, backend string, tok chaosToken, kills int, fault *chaosFault) *Report {
	daemonBin, cliBin := binaries(t)
	dir := t.TempDir()
	storeCfg := &config.Config{}
	storeCfg.Store.Backend = backend
	storeCfg.Store.BoltPath = filepath.Join(dir, "hsmca.db")
	// The store's servers first: their ports are taken before the
	// daemon's is picked.
	storeEnv, sen := chaosStore(t, backend, storeCfg)
	port := testenv.FreePort(t)
	env := []string{
		"HSMCA_DATA_DIR=" + dir,
		"HSMCA_LISTEN_ADDR=" + fmt.Sprintf("127.0.0.1:%d", port),
		"HSMCA_PKCS11_MODULE=" + tok.Module,
		"HSMCA_TOKEN_LABEL=" + tok.Label,
		"HSMCA_PIN_FILE=" + tok.PINFile,
		"HSMCA_LOG_LEVEL=warn",
		// The checks read every resource at once; rate limits have their own tests.
		"HSMCA_RATE_LIMIT_RPS=0",
		// Managed DTS roots need an IssuerAlternativeName.
		"HSMCA_ISSUER_ALT_NAME=https://chaos.example.com",
		"HSMCA_CONFIG=",
	}
	env = append(env, tok.Env...)
	env = append(env, storeEnv...)
	opts := Options{
		Target: &Target{Daemon: daemonBin, CLI: cliBin, Env: env, Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir},
		Store:  storeCfg,
		Token:  Token{Module: tok.Module, Label: tok.Label, PINFile: tok.PINFile, Env: tok.Env},
		Tenant: "chaos",
		Kills:  kills, Workers: envInt("HSMCA_CHAOS_WORKERS", 8),
		MinRun: 200 * time.Millisecond, MaxRun: envDur("HSMCA_CHAOS_MAX_RUN", 1200*time.Millisecond),
		PCA:  true,
		Seed: uint64(time.Now().UnixNano()),
		Logf: t.Logf,
	}
	if fault != nil {
		opts.Fault, opts.Outage, opts.FaultEvery = fault.inject, fault.outage, fault.every
		if fault.sentinel != nil {
			opts.Fault = fault.sentinel(sen)
		}
		opts.Target.Env = append(opts.Target.Env, fault.extra...)
	}
	rep, err := Run(context.Background(), opts)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon errors:\n%s", errorLines(dir))
		}
	})
	require.NoError(t, err)
	t.Logf("%s: %d kills in %s, requests in flight at each kill %v, %d resources at the end, %d empty SoftHSM2 object shells\n%s",
		backend, rep.Kills, rep.Duration.Round(time.Millisecond), rep.InFlight, rep.Resources, rep.Remnants, rep.Summary())
	assert.Empty(t, rep.Violations, "invariants broken")
	assert.Empty(t, rep.Unexpected, "5xx answers while the daemon was up")
	assert.Equal(t, kills, rep.Kills)
	required := []string{"key.create 201", "dts.root.create 201", "dts.signer.create 201", "apig.create 200",
		"pca.ca.create 200", "pca.cert.issue 200"}
	if fault != nil {
		// Rounds spent partly with a component away: the checks above
		// carry the weight; some HSM operations must have been served all
		// the same (on a loaded machine a short round may see only one
		// kind).
		assert.Positive(t, rep.Stats["key.create 201"]+rep.Stats["key.sign 200"], "the workload never created or signed with a key")
		required = nil
	}
	for _, k := range required {
		assert.Positive(t, rep.Stats[k], "the workload never succeeded at %q", k)
	}
	return rep
}

// errorLines collects the error lines of every daemon log in dir, the
// last errorLinesMax of them (a store away makes thousands).
func errorLines(dir string) string {
	logs, _ := filepath.Glob(filepath.Join(dir, "hsmcad-*.log"))
	var all []string
	for _, l := range logs {
		raw, _ := os.ReadFile(l)
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, "internal") {
				all = append(all, filepath.Base(l)+": "+line)
			}
		}
	}
	if len(all) > errorLinesMax {
		return fmt.Sprintf("(%d lines, the last %d)\n%s", len(all), errorLinesMax, strings.Join(all[len(all)-errorLinesMax:], "\n"))
	}
	return strings.Join(all, "\n")
}

const errorLinesMax = 200

// p11kitToken serves a fresh SoftHSM2 token through `p11-kit server`: the
// daemon reaches it over a socket, as a container reaches a network HSM.
func p11kitToken(t testing.TB) (chaosToken, *testenv.P11KitServer) {
	s := testenv.NewP11KitToken(t)
	return chaosToken{Module: s.Module, Label: s.Label, PINFile: s.PINFile, Env: s.Env()}, s
}

// TestChaosHSMDrops kills the p11-kit server in front of the daemon's
// token under the mixed workload and starts it again: the daemon serves
// again without a restart, answering 503 (never 500) meanwhile, and the
// chaos checks hold: no acknowledged operation lost, no orphan key once
// the reconciler ran, quotas equal records, event chains intact.
func TestChaosHSMDrops(tt *testing.T) {
	t := keepFailures(tt)
	tok, srv := p11kitToken(t)
	rep := runChaosOn(t, "bolt", tok, envInt("HSMCA_CHAOS_HSM_DROPS", 3), &chaosFault{
		inject: func() func() { srv.Kill(); return srv.Start },
		outage: envDur("HSMCA_CHAOS_HSM_OUTAGE", 2*time.Second),
		extra:  []string{"HSMCA_PKCS11_CALL_TIMEOUT=2s"},
	})
	t.Logf("HSM back to /readyz 200: %v; answers while away: %v", rep.Recoveries, rep.OutageAnswers)
	assert.Zero(t, rep.OutageAnswers[500], "a 500 while the HSM was away")
	assert.Positive(t, rep.OutageAnswers[503], "no request met the outage")
}

// TestChaosHSMGoneAMinute keeps the p11-kit server away for a minute:
// the daemon's reconnect attempts back off meanwhile and it serves again
// within seconds of the server's return.
func TestChaosHSMGoneAMinute(tt *testing.T) {
	t := keepFailures(tt)
	tok, srv := p11kitToken(t)
	rep := runChaosOn(t, "redis", tok, 1, &chaosFault{
		inject: func() func() { srv.Kill(); return srv.Start },
		outage: envDur("HSMCA_CHAOS_HSM_LONG_OUTAGE", time.Minute),
		extra:  []string{"HSMCA_PKCS11_CALL_TIMEOUT=2s"},
	})
	t.Logf("HSM back to /readyz 200: %v; answers while away: %v", rep.Recoveries, rep.OutageAnswers)
	assert.Zero(t, rep.OutageAnswers[500], "a 500 while the HSM was away")
}

// TestChaosSentinel runs the mixed workload on a Sentinel topology (one
// master, two replicas, three sentinels) with the daemon killed in every
// round, as TestChaos does, and the Redis master SIGKILLed under load in
// every other round: the daemon follows the promoted replica without a
// restart (503 while no master answers, never 500), the old master comes
// back as a replica, and the checks hold after each daemon kill: every
// acknowledged operation is there (writes waited for a replica), quotas
// equal records, event chains verify, no orphan key.
// HSMCA_CHAOS_SENTINEL_KILLS (default 4) sets the daemon kills.
func TestChaosSentinel(tt *testing.T) {
	t := keepFailures(tt)
	tok := testenv.NewToken(t)
	failovers := 0
	rep := runChaosOn(t, "sentinel", chaosToken{Module: tok.Module, Label: tok.Label, PINFile: tok.PINFile,
		Env: []string{"SOFTHSM2_CONF=" + tok.ConfPath}}, envInt("HSMCA_CHAOS_SENTINEL_KILLS", 4), &chaosFault{
		every: 2,
		sentinel: func(s *testenv.Sentinel) func() func() {
			t.Cleanup(func() {
				if !t.Failed() {
					return
				}
				for _, n := range append(append([]*testenv.HANode(nil), s.Data...), s.Sentinels...) {
					t.Logf("log of %s (last %d lines):\n%s", n.Addr, nodeLogLines, lastLines(n.Log(), nodeLogLines))
				}
			})
			return func() func() {
				t.Logf("before failover %d: %s", failovers+1, s.Describe())
				old := s.KillMaster(t)
				now := s.WaitFailover(t, old.Addr, testenv.FailoverWait)
				failovers++
				t.Logf("failover %d: master %s killed, %s promoted", failovers, old.Addr, now)
				return func() {
					s.Rejoin(t, old)
					t.Logf("after failover %d: %s", failovers, s.Describe())
				}
			}
		},
	})
	t.Logf("failovers %d; /readyz 200 again after each master kill: %v; answers meanwhile: %v", failovers, rep.FaultSpans, rep.OutageAnswers)
	assert.Positive(t, failovers)
	assert.Zero(t, rep.OutageAnswers[500], "a 500 during a failover")
	served := 0
	for k, n := range rep.Stats {
		if strings.HasSuffix(k, " 200") || strings.HasSuffix(k, " 201") || strings.HasSuffix(k, " 204") {
			served += n
		}
	}
	assert.Positive(t, served, "the workload was never served")
}

// nodeLogLines is how much of each Redis node's log a failed Sentinel
// run prints.
const nodeLogLines = 60

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
