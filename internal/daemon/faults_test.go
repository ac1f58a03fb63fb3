package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/chaos"
	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
)

// persistentRedis is a redis-server that writes every command to its
// append-only file before answering, so that killing it and starting it
// again keeps what it acknowledged: what a fault test checks afterwards.
type persistentRedis struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startPersistentRedis(t *testing.T) *persistentRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		testenv.Missing(t, "redis-server not on PATH (apt-get install redis-server)")
	}
	r := &persistentRedis{t: t, port: testenv.FreePort(t), dir: t.TempDir()}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

func (r *persistentRedis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// Start runs the server on its port and data directory and waits until it
// has loaded its file and answers PING.
func (r *persistentRedis) Start() {
	r.t.Helper()
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", r.dir)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	require.NoError(r.t, cmd.Start())
	r.cmd = cmd
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), time.Second); err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on port %d did not answer PING", r.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server with SIGKILL.
func (r *persistentRedis) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// apiClient calls one daemon with one token.
type apiClient struct {
	base, token string
	http        *http.Client
}

type answer struct {
	status int
	body   []byte
	took   time.Duration
	err    error
}

func (a answer) m() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(a.body, &m)
	return m
}

func (c *apiClient) do(method, path string, body any) answer {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return answer{err: err}
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: raw, took: time.Since(start)}
}

// noRateLimit turns the per-credential limit off: the load answers 503s as
// fast as it can ask, far above any sensible rate.
func noRateLimit(cfg *config.Config) *config.Config {
	off := 0.0
	cfg.RateLimit.RequestsPerSecond = &off
	return cfg
}

func newClient(t *testing.T, d *Daemon, tenant string) *apiClient {
	t.Helper()
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	secret, _, err := d.Engine().CreateToken(ctx, tenant, []string{signer.RoleAdmin}, nil)
	require.NoError(t, err)
	return &apiClient{base: "http://" + d.Addr(), token: secret, http: &http.Client{Timeout: 30 * time.Second}}
}

// family is one API family's way to create a resource and to say whether
// an error answer carries its envelope for "unavailable".
type family struct {
	name      string
	create    func(c *apiClient) answer
	id        func(a answer) string
	get       func(id string) string
	unavailOK func(a answer) bool
}

func nativeUnavailable(a answer) bool {
	m := a.m()
	return a.status == 503 && m["code"] == "ServiceUnavailable" && m["message"] != ""
}

func huaweiUnavailable(code string) func(a answer) bool {
	return func(a answer) bool {
		m := a.m()
		return a.status == 503 && m["error_code"] == code && m["error_msg"] != "" && len(m) == 2
	}
}

// selfSignedPEM is an APIG-importable pair: a self-signed leaf with a SAN.
func selfSignedPEM(t testing.TB) (string, string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	cn := fmt.Sprintf("h%d.faults.example", n.Int64()%1e6)
	tmpl := &x509.Certificate{SerialNumber: n.Add(n, big.NewInt(1)), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
}

// familyOps returns a create operation for every family of tenant; pcaRoot
// is an ACTIVED CA to issue under.
func familyOps(t *testing.T, tenant, pcaRoot string) []family {
	str := func(k string) func(a answer) string {
		return func(a answer) string { s, _ := a.m()[k].(string); return s }
	}
	var seq struct {
		sync.Mutex
		n int
	}
	next := func() int { seq.Lock(); defer seq.Unlock(); seq.n++; return seq.n }
	return []family{
		{"keys", func(c *apiClient) answer {
			return c.do("POST", "/v1/keys", map[string]any{"algorithm": "EC256"})
		}, str("id"), func(id string) string { return "/v1/keys/" + id }, nativeUnavailable},
		{"dts", func(c *apiClient) answer {
			// At most 3 roots per tenant: later creations answer 409.
			return c.do("POST", "/v1/ecosystems/certificates/ca", map[string]any{"organisationName": "Faults Inc."})
		}, str("id"), func(id string) string { return "/v1/ecosystems/certificates/ca/" + id }, nativeUnavailable},
		{"pca", func(c *apiClient) answer {
			cn := fmt.Sprintf("leaf%d.faults.example", next())
			return c.do("POST", "/v1/private-certificates", map[string]any{"issuer_id": pcaRoot,
				"distinguished_name": map[string]any{"common_name": cn}, "validity": map[string]any{"type": "DAY", "value": 30},
				"subject_alternative_names": []map[string]any{{"type": "DNS", "value": cn}}})
		}, str("certificate_id"), func(id string) string { return "/v1/private-certificates/" + id }, huaweiUnavailable("PCA.10010006")},
		{"apig", func(c *apiClient) answer {
			cert, key := selfSignedPEM(t)
			return c.do("POST", "/v2/"+tenant+"/apigw/certificates", map[string]any{
				"name": fmt.Sprintf("faults_%d", next()), "cert_content": cert, "private_key": key})
		}, str("id"), func(id string) string { return "/v2/" + tenant + "/apigw/certificates/" + id }, huaweiUnavailable("APIG.9000")},
	}
}

func createPCARoot(t *testing.T, c *apiClient) string {
	t.Helper()
	a := c.do("POST", "/v1/private-certificate-authorities", map[string]any{"type": "ROOT",
		"distinguished_name": map[string]any{"common_name": "Faults Root", "country": "DE", "state": "Berlin",
			"locality": "Berlin", "organization": "hsmca tests", "organizational_unit": "PKI"},
		"key_algorithm": "EC256", "signature_algorithm": "SHA256", "validity": map[string]any{"type": "YEAR", "value": 5}})
	require.Equal(t, 200, a.status, "%s", a.body)
	id, _ := a.m()["ca_id"].(string)
	require.NotEmpty(t, id)
	return id
}

// load runs creations of every family on several goroutines until stop,
// recording what was acknowledged and every other answer.
type load struct {
	mu     sync.Mutex
	acked  map[string][]string // family -> ids
	errs   map[string]int      // "family status" -> count
	bad    []string            // answers that are neither success nor the family's 503
	took   time.Duration       // slowest 503
	stop   chan struct{}
	wg     sync.WaitGroup
	counts map[string]int
}

func startLoad(c *apiClient, fams []family, workers int) *load {
	l := &load{acked: map[string][]string{}, errs: map[string]int{}, counts: map[string]int{}, stop: make(chan struct{})}
	for i := 0; i < workers; i++ {
		l.wg.Add(1)
		go func(i int) {
			defer l.wg.Done()
			for n := i; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				f := fams[n%len(fams)]
				a := f.create(c)
				l.mu.Lock()
				switch {
				case a.err != nil:
					l.bad = append(l.bad, fmt.Sprintf("%s: no answer: %v", f.name, a.err))
				case a.status < 300:
					id := f.id(a)
					l.acked[f.name] = append(l.acked[f.name], id)
					l.counts["ok"]++
				case f.unavailOK(a):
					l.counts["503"]++
					l.took = max(l.took, a.took)
				case a.status == 409 || a.status == 400:
					// Quota or a race between creations: an answer, not a fault.
					l.errs[fmt.Sprintf("%s %d", f.name, a.status)]++
				default:
					l.bad = append(l.bad, fmt.Sprintf("%s: %d %s", f.name, a.status, a.body))
				}
				l.mu.Unlock()
			}
		}(i)
	}
	return l
}

func (l *load) count(k string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[k]
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

// assertConsistent settles leftover intents as a restart would, then checks
// that nothing is half-written: every acknowledged resource reads back,
// quota counters equal the records, every HSM key belongs to a record and
// every record's key exists.
func assertConsistent(t *testing.T, d *Daemon, c *apiClient, tenant string, fams []family, acked map[string][]string) {
	t.Helper()
	ctx := context.Background()
	rep, err := d.Engine().Reconcile(ctx, nil, 0)
	require.NoError(t, err)
	t.Logf("reconciler after the fault: %+v", rep)
	for _, f := range fams {
		for _, id := range acked[f.name] {
			a := c.do("GET", f.get(id), nil)
			assert.Equal(t, 200, a.status, "%s %s acknowledged, then lost: %s", f.name, id, a.body)
		}
	}
	ss, bad, err := chaos.CheckStore(ctx, d.store, tenant)
	require.NoError(t, err)
	assert.Empty(t, bad)
	assert.Zero(t, ss.Intents, "no intent left after the reconciler")
	hh, err := d.Engine().HSM()
	require.NoError(t, err)
	keys, err := hh.(*hsm.HSM).List(ctx)
	require.NoError(t, err)
	var objs []chaos.Object
	for _, k := range keys {
		objs = append(objs, chaos.Object{Class: "private", ID: k.ID, Label: k.Label})
	}
	bad, _ = chaos.CheckHSM(objs, ss.Owned)
	assert.Empty(t, bad)
}

// Redis stopped mid-load: every request fails with 503 in its family's
// envelope (the store's timeouts are 500 ms and nothing is retried, so a
// dead Redis fails a request fast; the slowest is logged), readiness names
// the store, nothing is half-written, and service resumes by itself when
// Redis is back.
func TestRedisStoppedMidLoad(t *testing.T) {
	tok := testenv.NewToken(t)
	r := startPersistentRedis(t)
	cfg := noRateLimit(testConfig(t, tok))
	cfg.Store.Backend, cfg.Store.RedisURL = "redis", r.URL()
	d, _ := startDaemon(t, cfg, nil)
	base := "http://" + d.Addr()
	waitStatus(t, base+"/readyz", 200, 30*time.Second)
	const tenant = "faults"
	c := newClient(t, d, tenant)
	fams := familyOps(t, tenant, createPCARoot(t, c))

	l := startLoad(c, fams, 6)
	waitFor(t, 60*time.Second, "creations before the fault", func() bool { return l.count("ok") >= 12 })
	r.Stop()
	var slowest time.Duration
	for _, f := range fams {
		a := f.create(c)
		assert.True(t, f.unavailOK(a), "%s while Redis is down: want 503 in the family's envelope, got %d %s", f.name, a.status, a.body)
		slowest = max(slowest, a.took)
	}
	waitFor(t, 30*time.Second, "the load meeting the fault", func() bool { return l.count("503") >= 20 })
	body := waitStatus(t, base+"/readyz", 503, 10*time.Second)
	assert.Equal(t, []any{"store"}, body["failing"])

	okBefore := l.count("ok")
	r.Start()
	waitStatus(t, base+"/readyz", 200, 30*time.Second)
	waitFor(t, 30*time.Second, "creations after Redis came back", func() bool { return l.count("ok") >= okBefore+8 })
	l.finish()
	for _, f := range fams {
		a := f.create(c)
		if f.name == "dts" {
			assert.Equal(t, 409, a.status, "the DTS quota holds after recovery: %s", a.body)
			continue
		}
		assert.Less(t, a.status, 300, "%s after recovery: %d %s", f.name, a.status, a.body)
	}
	t.Logf("during the outage: %d answers were 503 (slowest %s; probes' slowest %s); others %v",
		l.count("503"), l.took, slowest, l.errs)
	assert.Empty(t, l.bad, "answers that were neither success nor the family's 503")
	assertConsistent(t, d, c, tenant, fams, l.acked)
}

// secondPKCS11 opens the module again in this process, as another library
// would: it shares the daemon's library state, so closing sessions through
// it closes the daemon's.
func secondPKCS11(t *testing.T, tok *testenv.Token) (*pkcs11.Ctx, uint) {
	t.Helper()
	p := pkcs11.New(tok.Module)
	require.NotNil(t, p)
	t.Cleanup(p.Destroy) // never Finalize: the daemon owns the library
	if err := p.Initialize(); err != nil {
		require.ErrorIs(t, err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED))
	}
	slots, err := p.GetSlotList(true)
	require.NoError(t, err)
	for _, s := range slots {
		if ti, err := p.GetTokenInfo(s); err == nil && ti.Label == tok.Label {
			return p, s
		}
	}
	t.Fatalf("token %q not visible to a second handle", tok.Label)
	return nil, 0
}

// The HSM's sessions are closed behind the daemon's back while requests
// run: they fail with 503 in their family's envelope while it reconnects,
// then the same daemon (no restart) serves again, with the keys it had,
// and nothing is half-written.
func TestHSMSessionsClosedMidLoad(t *testing.T) {
	tok := testenv.NewToken(t)
	cfg := noRateLimit(testConfig(t, tok))
	d, _ := startDaemon(t, cfg, nil)
	base := "http://" + d.Addr()
	waitStatus(t, base+"/readyz", 200, 30*time.Second)
	const tenant = "faults"
	c := newClient(t, d, tenant)
	fams := familyOps(t, tenant, createPCARoot(t, c))
	before := c.do("POST", "/v1/keys", map[string]any{"algorithm": "EC256"})
	require.Equal(t, 201, before.status, "%s", before.body)
	keyID := before.m()["id"].(string)
	sign := func() answer {
		return c.do("POST", "/v1/keys/"+keyID+"/sign", map[string]any{"message": base64.StdEncoding.EncodeToString([]byte("after"))})
	}

	p, slot := secondPKCS11(t, tok)
	l := startLoad(c, fams, 6)
	waitFor(t, 60*time.Second, "creations before the fault", func() bool { return l.count("ok") >= 12 })
	for round := 0; round < 3; round++ {
		okBefore := l.count("ok")
		require.NoError(t, p.CloseAllSessions(slot))
		waitFor(t, 60*time.Second, "creations after the sessions were closed", func() bool { return l.count("ok") >= okBefore+8 })
	}
	l.finish()
	waitStatus(t, base+"/readyz", 200, 30*time.Second)
	a := sign()
	assert.Equal(t, 200, a.status, "a key made before the fault signs again without a restart: %s", a.body)
	t.Logf("while reconnecting: %d answers were 503; others %v", l.count("503"), l.errs)
	assert.Empty(t, l.bad, "answers that were neither success nor the family's 503")
	assertConsistent(t, d, c, tenant, fams, l.acked)
}

// The token does not exist when the daemon starts: it serves, /readyz
// names the token, and it becomes ready by itself once the token is
// initialised by another process.
func TestTokenAppearsAfterStart(t *testing.T) {
	tok := testenv.NewToken(t) // the SoftHSM2 configuration, and a PIN file
	cfg := testConfig(t, tok)
	label := fmt.Sprintf("late-%d", os.Getpid())
	cfg.PKCS11.TokenLabel = label
	d, logs := startDaemon(t, cfg, nil)
	url := "http://" + d.Addr() + "/readyz"
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := get(t, url)
		checks, _ := body["checks"].(map[string]any)
		if h, _ := checks["hsm"].(string); code == 503 && strings.Contains(h, label) {
			break
		}
		require.True(t, time.Now().Before(deadline), "readyz never named the missing token: %d %v", code, body)
		time.Sleep(50 * time.Millisecond)
	}
	code, _ := get(t, "http://"+d.Addr()+"/healthz")
	assert.Equal(t, 200, code, "the daemon serves while its token is missing")

	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label,
		"--so-pin", tok.SOPIN, "--pin", tok.PIN).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() {
		_ = exec.Command("softhsm2-util", "--delete-token", "--token", label).Run()
	})
	// The retry backs off to at most 30 s between attempts.
	waitStatus(t, url, 200, 90*time.Second)
	c := newClient(t, d, "late")
	a := c.do("POST", "/v1/keys", map[string]any{"algorithm": "EC256"})
	assert.Equal(t, 201, a.status, "%s", a.body)
	assert.NotContains(t, logs.String(), tok.PIN)
}
