package monitoring_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/internal/monitoring"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
)

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func tool(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		testenv.Missing(t, "%s not installed (Debian package prometheus; make e2e-monitoring installs it)", name)
	}
	return p
}

// client talks to the daemon with one tenant's token.
type client struct {
	t     *testing.T
	base  string
	token string
}

func (c *client) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(c.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

func startDaemon(t *testing.T, tok *testenv.Token) *daemon.Daemon {
	for _, e := range config.Env {
		if _, ok := os.LookupEnv(e.Name); ok {
			t.Setenv(e.Name, "")
			os.Unsetenv(e.Name)
		}
	}
	t.Setenv("HSMCA_DATA_DIR", t.TempDir())
	t.Setenv("HSMCA_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("HSMCA_PKCS11_MODULE", tok.Module)
	t.Setenv("HSMCA_TOKEN_LABEL", tok.Label)
	t.Setenv("HSMCA_PIN_FILE", tok.PINFile)
	t.Setenv("HSMCA_INVENTORY_INTERVAL", "1s")
	t.Setenv("HSMCA_ISSUER_ALT_NAME", "https://pki.example.com")
	cfg, err := config.Load("")
	require.NoError(t, err)
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Shutdown(context.Background()) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + d.Addr() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d
			}
		}
		require.True(t, time.Now().Before(deadline), "daemon not ready")
		time.Sleep(100 * time.Millisecond)
	}
}

func startPrometheus(t *testing.T, bin, target string) string {
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - %s\nscrape_configs:\n  - job_name: hsmca\n    static_configs:\n      - targets: [%q]\n",
		filepath.Join(repoRoot(t), "deploy", "prometheus", "alerts.yml"), target)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600))
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	logs := &lockedBuffer{}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready: %s", logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lockedBuffer collects a child process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// closeSessions closes every session of the token from a second PKCS#11
// handle in this process, as an HSM restart would: the daemon's next calls
// fail (counted as PKCS#11 errors) until it recovers.
func closeSessions(t *testing.T, tok *testenv.Token) {
	p := pkcs11.New(tok.Module)
	require.NotNil(t, p)
	defer p.Destroy() // never Finalize: the daemon owns the library
	if err := p.Initialize(); err != nil {
		require.ErrorIs(t, err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED))
	}
	slots, err := p.GetSlotList(true)
	require.NoError(t, err)
	for _, s := range slots {
		if ti, err := p.GetTokenInfo(s); err == nil && ti.Label == tok.Label {
			require.NoError(t, p.CloseAllSessions(s))
			return
		}
	}
	t.Fatalf("token %q not found", tok.Label)
}

// workload drives every family the dashboard shows: keys and signatures,
// failures, CAs of each kind, and an HSM fault with its recovery.
func workload(t *testing.T, d *daemon.Daemon, tok *testenv.Token) {
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	secret, _, err := d.Engine().CreateToken(ctx, "acme", []string{"admin"}, nil)
	require.NoError(t, err)
	c := &client{t: t, base: "http://" + d.Addr(), token: secret}

	keys := map[string]string{}
	for _, alg := range []string{"EC256", "ED25519"} {
		code, body := c.do("POST", "/v1/keys", map[string]any{"algorithm": alg})
		require.Equal(t, 201, code, "%v", body)
		keys[alg] = body["id"].(string)
	}
	sign := func() int {
		digest := make([]byte, 32)
		_, _ = rand.Read(digest)
		code, _ := c.do("POST", "/v1/keys/"+keys["EC256"]+"/sign", map[string]any{"algorithm": "ES256", "digest": base64.StdEncoding.EncodeToString(digest)})
		c.do("POST", "/v1/keys/"+keys["ED25519"]+"/sign", map[string]any{"algorithm": "EdDSA", "message": base64.StdEncoding.EncodeToString([]byte("hello"))})
		return code
	}
	for i := 0; i < 20; i++ {
		require.Equal(t, 200, sign())
	}
	code, _ := c.do("GET", "/v1/keys/no-such-key", nil)
	assert.Equal(t, 404, code)
	code, _ = c.do("POST", "/v1/keys", map[string]any{"algorithm": "DSA1024"})
	assert.Equal(t, 400, code)

	createCAs(t, c)

	closeSessions(t, tok)
	deadline := time.Now().Add(20 * time.Second)
	for sign() != 200 {
		require.True(t, time.Now().Before(deadline), "signing did not recover after the sessions were closed")
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMonitoringEndToEnd(t *testing.T) {
	promtool := tool(t, "promtool")
	prometheus := tool(t, "prometheus")
	root := repoRoot(t)

	t.Run("rules", func(t *testing.T) {
		out, err := exec.Command(promtool, "check", "rules", filepath.Join(root, "deploy/prometheus/alerts.yml")).CombinedOutput()
		require.NoError(t, err, "%s", out)
		out, err = exec.Command(promtool, "test", "rules", filepath.Join(root, "deploy/prometheus/alerts_test.yml")).CombinedOutput()
		require.NoError(t, err, "%s", out)
		out, err = exec.Command(promtool, "check", "config", "--syntax-only", filepath.Join(root, "deploy/prometheus/prometheus.yml")).CombinedOutput()
		require.NoError(t, err, "%s", out)
	})

	tok := testenv.NewToken(t)
	d := startDaemon(t, tok)
	promURL := startPrometheus(t, prometheus, d.Addr())
	workload(t, d, tok)

	// Wait until Prometheus has scraped the state after the workload a few
	// times, so rates and the inventory gauges have samples.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := monitoring.InstantSeries(context.Background(), promURL, `count_over_time(hsmca_events_total{event="KEY_SIGN",stage="SUCCESS"}[1m]) >= 5`)
		if err == nil && n > 0 {
			// One series per CA kind: dts_root, pca_root, pca_subordinate.
			if n2, _ := monitoring.InstantSeries(context.Background(), promURL, `hsmca_ca_certificate_expiry_seconds > 0`); n2 == 3 {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "prometheus never scraped the workload")
		time.Sleep(500 * time.Millisecond)
	}

	resp, err := http.Get("http://" + d.Addr() + "/metrics")
	require.NoError(t, err)
	exposition, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	t.Run("metrics lint", func(t *testing.T) {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(exposition)
		out, err := cmd.CombinedOutput()
		assert.NoError(t, err, "%s", out)
		assert.Empty(t, strings.TrimSpace(string(out)), "promtool check metrics findings")
		for _, line := range strings.Split(string(exposition), "\n") {
			if strings.HasPrefix(line, "hsmca_") {
				assert.NotContains(t, line, "acme", "a tenant in a label")
			}
		}
	})

	raw, err := os.ReadFile(filepath.Join(root, "deploy/grafana/hsmca.json"))
	require.NoError(t, err)
	queries, err := monitoring.Queries(raw)
	require.NoError(t, err)
	require.NotEmpty(t, queries)
	exported := monitoring.Exported(string(exposition))

	t.Run("every panel has data", func(t *testing.T) {
		for _, p := range monitoring.Check(context.Background(), promURL, queries, exported) {
			t.Error(p)
		}
	})

	t.Run("a panel naming an unexported metric fails", func(t *testing.T) {
		bad := append([]monitoring.Query(nil), queries[0])
		bad = append(bad, monitoring.Query{Panel: "Typo", RefID: "A", Expr: `sum(rate(hsmca_signatures_made_total[$__rate_interval]))`})
		problems := monitoring.Check(context.Background(), promURL, bad, exported)
		require.Len(t, problems, 1)
		assert.Equal(t, "Typo", problems[0].Query.Panel)
		assert.Contains(t, problems[0].Why, "hsmca_signatures_made_total")
	})

	t.Run("alert rules evaluate", func(t *testing.T) {
		// Every alert expression is valid against live data: Prometheus
		// reports rule health per rule.
		resp, err := http.Get(promURL + "/api/v1/rules")
		require.NoError(t, err)
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name      string `json:"name"`
						Health    string `json:"health"`
						LastError string `json:"lastError"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		n := 0
		for _, g := range body.Data.Groups {
			for _, r := range g.Rules {
				n++
				assert.NotEqual(t, "err", r.Health, "rule %s: %s", r.Name, r.LastError)
			}
		}
		assert.Equal(t, 8, n)
	})
}
