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

func binaries(t *testing.T) (string, string) {
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
			runChaos(t, backend)
		})
	}
}

func runChaos(t *testing.T, backend string) {
	daemonBin, cliBin := binaries(t)
	tok := testenv.NewToken(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	storeCfg := &config.Config{}
	storeCfg.Store.Backend = backend
	storeCfg.Store.BoltPath = filepath.Join(dir, "hsmca.db")
	env := []string{
		"HSMCA_DATA_DIR=" + dir,
		"HSMCA_LISTEN_ADDR=" + fmt.Sprintf("127.0.0.1:%d", port),
		"HSMCA_STORE=" + backend,
		"HSMCA_PKCS11_MODULE=" + tok.Module,
		"HSMCA_TOKEN_LABEL=" + tok.Label,
		"HSMCA_PIN_FILE=" + tok.PINFile,
		"HSMCA_LOG_LEVEL=warn",
		// The checks read every resource at once; rate limits have their own tests.
		"HSMCA_RATE_LIMIT_RPS=0",
		// Managed DTS roots need an IssuerAlternativeName.
		"HSMCA_ISSUER_ALT_NAME=https://chaos.example.com",
		"HSMCA_CONFIG=",
		"SOFTHSM2_CONF=" + tok.ConfPath,
	}
	if backend == "redis" {
		r := testenv.StartRedis(t)
		storeCfg.Store.RedisURL = r.URL()
		env = append(env, "HSMCA_REDIS_URL="+r.URL())
	}
	kills := envInt("HSMCA_CHAOS_KILLS", 20)
	rep, err := Run(context.Background(), Options{
		Target: &Target{Daemon: daemonBin, CLI: cliBin, Env: env, Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir},
		Store:  storeCfg,
		Token:  Token{Module: tok.Module, Label: tok.Label, PINFile: tok.PINFile},
		Tenant: "chaos",
		Kills:  kills, Workers: envInt("HSMCA_CHAOS_WORKERS", 8),
		MinRun: 200 * time.Millisecond, MaxRun: envDur("HSMCA_CHAOS_MAX_RUN", 1200*time.Millisecond),
		PCA:  true,
		Seed: uint64(time.Now().UnixNano()),
		Logf: t.Logf,
	})
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
	for _, k := range []string{"key.create 201", "dts.root.create 201", "dts.signer.create 201", "apig.create 200",
		"pca.ca.create 200", "pca.cert.issue 200"} {
		assert.Positive(t, rep.Stats[k], "the workload never succeeded at %q", k)
	}
}

// errorLines collects the error lines of every daemon log in dir.
func errorLines(dir string) string {
	logs, _ := filepath.Glob(filepath.Join(dir, "hsmcad-*.log"))
	var b strings.Builder
	for _, l := range logs {
		raw, _ := os.ReadFile(l)
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, "internal") {
				fmt.Fprintf(&b, "%s: %s\n", filepath.Base(l), line)
			}
		}
	}
	return b.String()
}
