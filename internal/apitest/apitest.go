// Package apitest runs the whole HTTP stack in-process over real
// components: a SoftHSM2 token, and a bolt file or a redis-server. Family
// tests use it to call routes as a client would.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/families"
	"github.com/hsmca/hsmca/internal/logjson"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/admins"
	"github.com/hsmca/hsmca/signer/apig"
	"github.com/hsmca/hsmca/signer/dts"
	"github.com/hsmca/hsmca/signer/keys"
	"github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

// Backends are the store backends every family test runs on.
var Backends = []string{"bolt", "redis"}

// Env is one in-process daemon.
type Env struct {
	T       testing.TB
	Backend string
	Store   store.Store
	HSM     *hsm.HSM
	Token   *testenv.Token
	Engine  *signer.Core
	Admins  *admins.Service
	Metrics *metrics.Metrics
	Server  *httptest.Server
	// Handler is the router without the test server and its contract
	// check (benchmarks call it directly).
	Handler http.Handler
	Logs    *LogBuffer
	Redis   *testenv.Redis // nil on bolt
}

// Options tune New.
type Options struct {
	// Token reuses an existing SoftHSM2 token (default: a fresh one).
	Token *testenv.Token
	// Spec, when set, is the token instead: a row of the token matrix
	// (opencryptoki's soft token, SoftHSM2 behind p11-kit). Env.Token is
	// then nil.
	Spec *testenv.TokenSpec
	// HSM adjusts the HSM layer's configuration (deadlines, pool size).
	HSM func(*hsm.Config)
	// RedisURL reuses an existing redis-server (default: a fresh one).
	Redis *testenv.Redis
	// Configure adjusts router options before the server starts.
	Configure func(*api.Options)
	// Engine adjusts engine options (quotas) before start.
	Engine func(*signer.Options)
	// DTS configures the DTS family's service (issuer alt name).
	DTS []dts.Option
	// PublicBaseURL is the public base URL of the core and the router
	// (none by default); SelfURL makes it the test server's own URL, so
	// that the URLs in the certificates it signs reach it.
	PublicBaseURL string
	// InfoLog logs at the daemon's default level (info) instead of debug.
	InfoLog bool
}

// SelfURL as Options.PublicBaseURL is the test server's own URL.
const SelfURL = "self"

// New starts the stack on backend ("bolt" or "redis").
func New(t testing.TB, backend string, opts ...Options) *Env {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	e := &Env{T: t, Backend: backend, Logs: &LogBuffer{}}
	e.Token = o.Token
	if e.Token == nil && o.Spec == nil {
		e.Token = testenv.NewToken(t)
	}
	var err error
	switch backend {
	case "bolt":
		e.Store, err = boltstore.Open(filepath.Join(t.TempDir(), "hsmca.db"), boltstore.Options{Indexes: families.Indexes()})
	case "redis":
		e.Redis = o.Redis
		if e.Redis == nil {
			e.Redis = testenv.StartRedis(t)
		}
		// Generous timeouts: these tests check behaviour, not how fast a dead
		// Redis is noticed (internal/daemon's fault tests do), and a loaded
		// CI machine under -race can stall a healthy round trip.
		e.Store, err = redisstore.Open(context.Background(), e.Redis.URL(), redisstore.Options{
			DialTimeout: 3 * time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second,
			Indexes: families.Indexes()})
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	require.NoError(t, err)
	// The daemon's handler (daemon.NewLogger): the access lines go
	// through its direct path.
	level := slog.LevelDebug
	if o.InfoLog {
		level = slog.LevelInfo
	}
	log := slog.New(logjson.New(e.Logs, level))
	hc := hsm.Config{Logger: log}
	if o.Spec != nil {
		hc.Module, hc.TokenLabel, hc.PIN = o.Spec.Module, o.Spec.Label, o.Spec.PIN
	} else {
		hc.Module, hc.TokenLabel, hc.PIN = e.Token.Module, e.Token.Label, e.Token.PIN
	}
	if o.HSM != nil {
		o.HSM(&hc)
	}
	e.HSM, err = hsm.Open(hc)
	require.NoError(t, err)
	e.Metrics = metrics.New("test")
	// The listener is bound first, so that the public base URL can be the
	// server's own address.
	srv := httptest.NewUnstartedServer(nil)
	base := o.PublicBaseURL
	if base == SelfURL {
		base = "http://" + srv.Listener.Addr().String()
	}
	so := signer.Options{Families: families.All(), Store: e.Store, Metrics: e.Metrics, Logger: log, HSM: e.HSM,
		PublicBaseURL: base}
	if o.Engine != nil {
		o.Engine(&so)
	}
	e.Engine = signer.New(so)
	e.Admins = admins.New(e.Engine)
	ro := api.Options{Engine: e.Engine, Logger: log, PublicBaseURL: base}
	ro.Admins = e.Admins
	ro.APIG = apig.New(e.Engine)
	ro.Keys = keys.New(e.Engine)
	ro.PCA = pca.New(e.Engine)
	if o.Configure != nil {
		o.Configure(&ro)
	}
	if ro.DTS == nil {
		ro.DTS = dts.New(e.Engine, o.DTS...)
	}
	e.Handler = api.Router(ro)
	srv.Config.Handler = Contract(t, e.Handler)
	srv.Start()
	e.Server = srv
	t.Cleanup(func() {
		e.Server.Close()
		e.Engine.Close()
		e.Store.Close()
	})
	return e
}

// NewToken mints an API token for tenant with roles and returns the secret.
func (e *Env) NewToken(tenant string, roles ...string) string {
	e.T.Helper()
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	secret, _, err := e.Engine.CreateToken(ctx, tenant, roles, nil)
	require.NoError(e.T, err)
	return secret
}

// NewAccessKey makes an access key for tenant with roles and returns its
// id and secret key.
func (e *Env) NewAccessKey(tenant string, roles ...string) (string, string) {
	e.T.Helper()
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	secret, k, err := e.Engine.CreateAccessKey(ctx, tenant, roles, nil)
	require.NoError(e.T, err)
	return k.ID, secret
}

// Response is a decoded HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test on error.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.Body, v), "body: %s", r.Body)
}

// Map decodes the body as a JSON object.
func (r *Response) Map(t testing.TB) map[string]any {
	var m map[string]any
	r.JSON(t, &m)
	return m
}

// Do sends a request; body may be nil, a string, []byte or a value to
// marshal as JSON. token, when set, goes in Authorization: Bearer.
func (e *Env) Do(method, path, token string, body any, headers ...string) *Response {
	e.T.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(e.T, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.Server.URL+path, rd)
	require.NoError(e.T, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	require.NoError(e.T, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(e.T, err)
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// LogBuffer collects log output for leak checks.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
