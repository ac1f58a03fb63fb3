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
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/internal/monitoring"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/metrics"
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
	// One export sink, so that the event export panels and alert have
	// their series (they exist from the start for each configured sink).
	t.Setenv("HSMCA_EVENTS_EXPORT_FILE", filepath.Join(t.TempDir(), "events.jsonl"))
	cfg, err := config.Load("")
	require.NoError(t, err)
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Shutdown(context.Background()) })
	// Readiness is probed in-process: until the workload, the daemon
	// serves nothing but Prometheus's scrapes.
	deadline := time.Now().Add(20 * time.Second)
	for len(d.Engine().Readiness(context.Background())) > 0 {
		require.True(t, time.Now().Before(deadline), "daemon not ready")
		time.Sleep(100 * time.Millisecond)
	}
	return d
}

// scrape reads the daemon's exposition as Prometheus does.
func scrape(t *testing.T, d *daemon.Daemon) string {
	t.Helper()
	resp, err := http.Get("http://" + d.Addr() + metrics.ScrapeRoute)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	exposition, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(exposition)
}

// freshDaemon checks the dashboard and the alert rules against a daemon
// that has served nothing but the scrape: every panel shows a value (0
// where nothing has happened), every series an alert reads exists, and
// no alert is pending or firing.
func freshDaemon(t *testing.T, d *daemon.Daemon, promURL string, queries []monitoring.Query, rules []monitoring.Rule) {
	ctx := context.Background()
	// Three scrapes: rate() over the dashboard's 15s needs two samples,
	// and the rules are evaluated every second meanwhile.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := monitoring.InstantSeries(ctx, promURL, `count_over_time(hsmca_build_info[1m]) >= 3`)
		if err == nil && n > 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "prometheus never scraped the daemon")
		time.Sleep(200 * time.Millisecond)
	}
	exported := monitoring.Exported(scrape(t, d))

	t.Run("every panel shows a value", func(t *testing.T) {
		for _, p := range monitoring.CheckFresh(ctx, promURL, queries, exported) {
			t.Error(p)
		}
	})

	t.Run("every series an alert reads exists", func(t *testing.T) {
		absent := map[string]string{
			"hsmca_ca_certificate_expiry_seconds": "no CA exists yet: nothing expires (a 0 would fire the alert)",
		}
		for _, p := range monitoring.CheckRules(ctx, promURL, rules, absent) {
			t.Error(p)
		}
	})

	t.Run("no alert pending or firing", func(t *testing.T) {
		n, err := monitoring.InstantSeries(ctx, promURL, `ALERTS`)
		require.NoError(t, err)
		assert.Zero(t, n, "a series at 0 from the start must not look like a fault")
	})

	t.Run("the 5xx series from the start is on the scrape route", func(t *testing.T) {
		n, err := monitoring.InstantSeries(ctx, promURL,
			fmt.Sprintf(`hsmca_http_requests_total{route=%q,method="GET",code="2xx"} > 0`, metrics.ScrapeRoute))
		require.NoError(t, err)
		assert.Equal(t, 1, n)
	})
}

// baselineNamesAreReal checks, after the workload, that the series
// created at 0 from the start are the ones real traffic counts under: a
// renamed operation, event or PKCS#11 function would leave a baseline
// series nobody increments, and the real one would appear with its
// first increment again.
func baselineNamesAreReal(t *testing.T, d *daemon.Daemon) {
	mfs, err := d.Engine().Metrics().Registry.Gather()
	require.NoError(t, err)
	labels := func(m *dto.Metric) map[string]string {
		out := map[string]string{}
		for _, l := range m.GetLabel() {
			out[l.GetName()] = l.GetValue()
		}
		return out
	}
	known := map[string]bool{}
	for _, f := range metrics.KnownHSMFunctions {
		known[f] = true
	}
	var signed, signEvents float64
	functions := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := labels(m)
			switch mf.GetName() {
			case "hsmca_signing_duration_seconds":
				if l["operation"] == metrics.BaselineSignOperation && l["key_algorithm"] == metrics.BaselineSignAlgorithm {
					signed = float64(m.GetHistogram().GetSampleCount())
				}
			case "hsmca_events_total":
				if l["event"] == metrics.BaselineSignEvent && l["stage"] == metrics.StageSuccess {
					signEvents = m.GetCounter().GetValue()
				}
			case "hsmca_hsm_call_duration_seconds":
				functions++
				assert.True(t, known[l["function"]], "the HSM layer calls %s: add it to metrics.KnownHSMFunctions", l["function"])
			}
		}
	}
	assert.Positive(t, signed, "no signature counted under the baseline signing series")
	assert.Positive(t, signEvents, "no event counted under the baseline event series")
	assert.Positive(t, functions)
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

	raw, err := os.ReadFile(filepath.Join(root, "deploy/grafana/hsmca.json"))
	require.NoError(t, err)
	queries, err := monitoring.Queries(raw)
	require.NoError(t, err)
	require.NotEmpty(t, queries)
	raw, err = os.ReadFile(filepath.Join(root, "deploy/prometheus/alerts.yml"))
	require.NoError(t, err)
	rules, err := monitoring.Rules(raw)
	require.NoError(t, err)
	require.Len(t, rules, 10)

	tok := testenv.NewToken(t)
	d := startDaemon(t, tok)
	promURL := startPrometheus(t, prometheus, d.Addr())
	t.Run("fresh daemon", func(t *testing.T) { freshDaemon(t, d, promURL, queries, rules) })

	workload(t, d, tok)
	t.Run("the series from the start count real traffic", func(t *testing.T) { baselineNamesAreReal(t, d) })

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

	exposition := scrape(t, d)

	t.Run("metrics lint", func(t *testing.T) {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(exposition)
		out, err := cmd.CombinedOutput()
		assert.NoError(t, err, "%s", out)
		assert.Empty(t, strings.TrimSpace(string(out)), "promtool check metrics findings")
		for _, line := range strings.Split(exposition, "\n") {
			if strings.HasPrefix(line, "hsmca_") {
				assert.NotContains(t, line, `"acme"`, "a tenant in a label")
			}
		}
	})

	exported := monitoring.Exported(exposition)

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
		assert.Equal(t, len(rules), n)
	})
}
