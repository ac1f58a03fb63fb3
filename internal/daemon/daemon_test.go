package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/store/boltstore"
)

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testConfig(t *testing.T, tok *testenv.Token) *config.Config {
	t.Helper()
	for _, e := range config.Env {
		if _, ok := os.LookupEnv(e.Name); ok {
			t.Setenv(e.Name, "")
			os.Unsetenv(e.Name)
		}
	}
	dir := t.TempDir()
	t.Setenv("HSMCA_DATA_DIR", dir)
	t.Setenv("HSMCA_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("HSMCA_PKCS11_MODULE", tok.Module)
	t.Setenv("HSMCA_TOKEN_LABEL", tok.Label)
	t.Setenv("HSMCA_PIN_FILE", tok.PINFile)
	t.Setenv("HSMCA_ISSUER_ALT_NAME", "https://dts.example.com")
	cfg, err := config.Load("")
	require.NoError(t, err)
	return cfg
}

func startDaemon(t *testing.T, cfg *config.Config, wrap func(http.Handler) http.Handler) (*Daemon, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := start(context.Background(), cfg, log, wrap)
	require.NoError(t, err)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { _ = d.Shutdown(context.Background()) }) })
	return d, logs
}

func get(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

// waitReady polls /readyz until it answers want or the deadline passes.
func waitStatus(t *testing.T, url string, want int, within time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := get(t, url)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want %d within %s, last %d %v", url, want, within, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestDaemonOnBoltIsReady(t *testing.T) {
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	d, logs := startDaemon(t, cfg, nil)
	base := "http://" + d.Addr()

	code, body := get(t, base+"/healthz")
	assert.Equal(t, 200, code)
	assert.Equal(t, "ok", body["status"])

	body = waitStatus(t, base+"/readyz", 200, 15*time.Second)
	assert.Equal(t, "ready", body["status"])

	raw := scrape(t, base)
	assert.Contains(t, string(raw), "hsmca_build_info")
	assert.Contains(t, string(raw), `hsmca_component_up{component="hsm"} 1`)
	assert.Regexp(t, `(?m)^hsmca_bolt_journal_used_ratio 0(\.\d+)?(e-\d+)?$`, string(raw))
	assert.Regexp(t, `(?m)^hsmca_bolt_journal_checkpoints_total \d+$`, string(raw))
	assert.Regexp(t, `(?m)^hsmca_go_procs [1-9]\d*$`, string(raw))
	assert.Regexp(t, `(?m)^hsmca_go_procs_changes_total \d+$`, string(raw))
	jfi, err := os.Stat(cfg.Store.BoltPath + "-journal")
	require.NoError(t, err, "the event journal lies beside the store file")
	assert.Equal(t, os.FileMode(0o600), jfi.Mode().Perm(), "the event journal must be private")

	fi, err := os.Stat(cfg.AdminSocket)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "admin socket must be private")

	require.NoError(t, d.Shutdown(context.Background()))
	assert.NotContains(t, logs.String(), tok.PIN, "the PIN must never be logged")
	_, err = os.Stat(cfg.AdminSocket)
	assert.True(t, os.IsNotExist(err), "admin socket removed on shutdown")
	assert.True(t, boltstore.FreelistWritten(cfg.Store.BoltPath), "a clean stop writes bbolt's free-page list: the next open reads it")
}

func TestReadyzNamesRedisWhileItIsDown(t *testing.T) {
	tok := testenv.NewToken(t)
	r := testenv.StartRedis(t)
	cfg := testConfig(t, tok)
	cfg.Store.Backend, cfg.Store.RedisURL = "redis", r.URL()
	d, _ := startDaemon(t, cfg, nil)
	url := "http://" + d.Addr() + "/readyz"
	waitStatus(t, url, 200, 15*time.Second)

	r.Stop()
	body := waitStatus(t, url, 503, 5*time.Second)
	assert.Equal(t, []any{"store"}, body["failing"], "only the store is failing")
	checks := body["checks"].(map[string]any)
	assert.Equal(t, "ok", checks["hsm"])
	assert.NotEqual(t, "ok", checks["store"])

	r.Start()
	body = waitStatus(t, url, 200, 15*time.Second)
	assert.Equal(t, "ready", body["status"])
}

func TestReadyzNamesMissingToken(t *testing.T) {
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	cfg.PKCS11.TokenLabel = "no-such-token"
	d, logs := startDaemon(t, cfg, nil)
	url := "http://" + d.Addr() + "/readyz"
	// The first probe can answer 503 before the open has failed; wait for
	// the check to carry the reason.
	deadline := time.Now().Add(10 * time.Second)
	var body map[string]any
	for {
		var code int
		code, body = get(t, url)
		checks, _ := body["checks"].(map[string]any)
		if hsm, _ := checks["hsm"].(string); code == 503 && strings.Contains(hsm, "no-such-token") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never named the missing token: %d %v", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	assert.Equal(t, []any{"hsm"}, body["failing"])
	assert.NotContains(t, logs.String(), tok.PIN)
}

func TestShutdownDrainsInFlightRequests(t *testing.T) {
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	entered := make(chan struct{})
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				close(entered)
				time.Sleep(700 * time.Millisecond)
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte("finished"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	d, _ := startDaemon(t, cfg, wrap)
	base := "http://" + d.Addr()

	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{code: resp.StatusCode, body: string(raw)}
	}()
	<-entered
	require.NoError(t, d.Shutdown(context.Background()))
	res := <-done
	require.NoError(t, res.err, "the in-flight request must complete")
	assert.Equal(t, 200, res.code)
	assert.Equal(t, "finished", res.body)

	_, err := (&http.Client{Timeout: 2 * time.Second}).Get(base + "/healthz")
	assert.Error(t, err, "no new connections after shutdown")
}

func TestSecondDaemonOnSameDataDirIsRefused(t *testing.T) {
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	startDaemon(t, cfg, nil)
	cfg2 := *cfg
	cfg2.ListenAddr = "127.0.0.1:0"
	_, err := start(context.Background(), &cfg2, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "locked") || strings.Contains(err.Error(), "in use"), err.Error())
}

func TestBadIssuerAltNameRefusedAtStart(t *testing.T) {
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	cfg.IssuerAltName = "not a uri or an email"
	_, err := Start(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "issuer_alt_name")
}
