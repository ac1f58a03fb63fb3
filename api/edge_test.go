package api_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/admins"
)

// rawDo sends one request through the whole router in-process, from
// remote (host:port), with the given headers; Host may be among them.
func rawDo(h http.Handler, method, path, remote, body string, headers ...string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	req.RemoteAddr = remote
	req.Host = "127.0.0.1:8080"
	for i := 0; i+1 < len(headers); i += 2 {
		if strings.EqualFold(headers[i], "Host") {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// A method outside the standard set answers 501 on every path, in the
// envelope of the family whose URL space holds the path, before routing:
// also where the path exists. A standard method a route does not take
// still answers 405.
func TestUnknownMethodsAnswer501(t *testing.T) {
	env := apitest.New(t, "bolt")
	for _, tc := range []struct{ path, family string }{
		{"/healthz", "native"},
		{"/v1/keys", "native"},
		{"/v1/nothing-here", "native"},
		{"/v1/ecosystems/certificates/ca", "native"},
		{"/v1/private-certificate-authorities", "pca"},
		{"/v1/private-certificates/x", "pca"},
		{"/v2/acme/apigw/certificates", "apig"},
		{"/v1/admins", "czertainly"},
		{"/v1/local/admins", "czertainly"},
	} {
		for _, m := range []string{"BREW", "PROPFIND", "get", "ABCDEFGHIJKLMNOP"} {
			r := env.Do(m, tc.path, "", nil)
			assert.Equal(t, http.StatusNotImplemented, r.Status, "%s %s: %s", m, tc.path, r.Body)
			checkFamilyEnvelope(t, tc.family, r.Status, r.Body)
			assert.Equal(t, "nosniff", r.Header.Get("X-Content-Type-Options"))
		}
	}
	r := env.Do("DELETE", "/healthz", "", nil)
	assert.Equal(t, http.StatusMethodNotAllowed, r.Status)
	checkFamilyEnvelope(t, "native", r.Status, r.Body)
	r = env.Do("PUT", "/v1/admins/x/enable/y", "", nil)
	assert.Equal(t, http.StatusNotFound, r.Status)

	body := scrape(t, env)
	assert.Contains(t, body, `hsmca_http_requests_total{code="5xx",method="OTHER",route="unmatched"} 36`)
	assert.NotContains(t, body, "BREW")
	assert.NotContains(t, body, "PROPFIND")
}

func scrape(t *testing.T, env *apitest.Env) string {
	t.Helper()
	r := env.Do("GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	return string(r.Body)
}

// Every answer says X-Content-Type-Options: nosniff, redirects and errors
// included; Strict-Transport-Security only when the listener serves TLS.
func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	env := apitest.New(t, "bolt")
	for _, hsts := range []bool{false, true} {
		h := api.Router(api.Options{Engine: env.Engine, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), HSTS: hsts})
		for _, tc := range []struct {
			method, path string
			status       int
		}{
			{"GET", "/healthz", 200},
			{"GET", "/openapi.yaml", 200},
			{"GET", "/metrics", 200},
			{"GET", "/healthz/", http.StatusMovedPermanently},
			{"GET", "/v1/keys", 401},
			{"GET", "/v1/none", 404},
			{"DELETE", "/healthz", 405},
			{"BREW", "/healthz", 501},
		} {
			rec := rawDo(h, tc.method, tc.path, "192.0.2.1:1000", "")
			assert.Equal(t, tc.status, rec.Code, "%s %s", tc.method, tc.path)
			assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"), "%s %s", tc.method, tc.path)
			if hsts {
				assert.Equal(t, "max-age=63072000", rec.Header().Get("Strict-Transport-Security"), "%s %s", tc.method, tc.path)
			} else {
				assert.Empty(t, rec.Header().Get("Strict-Transport-Security"), "%s %s", tc.method, tc.path)
			}
		}
	}
}

var routeParam = regexp.MustCompile(`:\w+`)

// Every public route that does work (every Access{Public} route but the
// probes and the scrape) is limited per client address: past the burst,
// 429 with Retry-After in the route's family envelope; another address
// is unaffected; the probes and the scrape are never limited.
func TestPublicRoutesRateLimitedPerAddress(t *testing.T) {
	env := apitest.New(t, "bolt")
	const burst = 3
	// A refill of one request per 100 s: nothing refills during the test.
	o := api.Options{Engine: env.Engine, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		PublicRateLimit: api.PublicRateLimit{RequestsPerSecond: 0.01, Burst: burst}}
	h := api.Router(o)
	limited := 0
	for _, ri := range api.Routes(o) {
		if !ri.Access.Public {
			continue
		}
		path := routeParam.ReplaceAllString(ri.Path, "x")
		if ri.Access.Unlimited {
			assert.Contains(t, []string{"/healthz", "/readyz", "/metrics"}, ri.Path, "only the probes and the scrape are unlimited")
			for i := 0; i < 10*burst; i++ {
				rec := rawDo(h, ri.Method, path, "192.0.2.50:1000", "")
				require.NotEqual(t, http.StatusTooManyRequests, rec.Code, ri.Path)
			}
			continue
		}
		limited++
		remote := "192.0.2." + strconv.Itoa(limited) + ":1000"
		for i := 0; i < burst; i++ {
			rec := rawDo(h, ri.Method, path, remote, "")
			require.NotEqual(t, http.StatusTooManyRequests, rec.Code, "%s request %d", ri.Path, i)
		}
		rec := rawDo(h, ri.Method, path, remote, "")
		require.Equal(t, http.StatusTooManyRequests, rec.Code, "%s %s", ri.Method, ri.Path)
		checkFamilyEnvelope(t, ri.Family, rec.Code, rec.Body.Bytes())
		secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
		require.NoError(t, err, "Retry-After: %q", rec.Header().Get("Retry-After"))
		assert.Equal(t, 100, secs)
		// Another port of the same address: the same client.
		assert.Equal(t, http.StatusTooManyRequests, rawDo(h, ri.Method, path, "192.0.2."+strconv.Itoa(limited)+":2000", "").Code)
		// X-Forwarded-For is not believed without a trusted proxy.
		assert.Equal(t, http.StatusTooManyRequests, rawDo(h, ri.Method, path, remote, "", "X-Forwarded-For", "203.0.113.77").Code)
		// Another address is not limited.
		assert.NotEqual(t, http.StatusTooManyRequests, rawDo(h, ri.Method, path, "198.51.100."+strconv.Itoa(limited)+":1000", "").Code)
	}
	assert.GreaterOrEqual(t, limited, 3, "the CRLs of both families and the OpenAPI document are limited")

	// Behind a trusted proxy the client is the last X-Forwarded-For entry.
	o.TrustedProxy = true
	px := api.Router(o)
	crl := "/v1/private-certificate-authorities/x/crl"
	for i := 0; i < burst; i++ {
		require.NotEqual(t, http.StatusTooManyRequests, rawDo(px, "GET", crl, "127.0.0.1:1000", "", "X-Forwarded-For", "1.2.3.4, 203.0.113.5").Code)
	}
	assert.Equal(t, http.StatusTooManyRequests, rawDo(px, "GET", crl, "127.0.0.1:1000", "", "X-Forwarded-For", "9.9.9.9, 203.0.113.5").Code,
		"entries before the proxy's own are the client's to invent")
	assert.NotEqual(t, http.StatusTooManyRequests, rawDo(px, "GET", crl, "127.0.0.1:1000", "", "X-Forwarded-For", "203.0.113.6").Code,
		"another client behind the same proxy")

	// Zero disables the limit.
	off := api.Router(api.Options{Engine: env.Engine, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for i := 0; i < 10*burst; i++ {
		require.NotEqual(t, http.StatusTooManyRequests, rawDo(off, "GET", crl, "192.0.2.200:1000", "").Code)
	}
}

// /readyz tells why only to a direct loopback caller or a caller with a
// valid credential; everyone else reads the status and the failing
// components' names, never the reasons (token label, PIN, Redis address).
func TestReadyzViews(t *testing.T) {
	env := apitest.New(t, "bolt")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tok := env.NewToken("acme", signer.RoleAuditor)
	admin := testpki.NewCA(t, "readyz admin CA").Issue(t, testpki.Options{CommonName: "root"})
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	_, err := env.Admins.Bootstrap(ctx, admins.Input{Username: "root", Certificate: admin.B64()},
		admins.BootstrapOptions{ProfileOptional: true, Recover: true})
	require.NoError(t, err)
	stranger := testpki.NewCA(t, "other CA").Issue(t, testpki.Options{CommonName: "nobody"})

	// An engine whose HSM failed with a reason that names the token and PIN.
	down := signer.New(signer.Options{Store: env.Store, Metrics: metrics.New("test"), Logger: quiet})
	t.Cleanup(func() { down.Close() })
	const reason = `opening token "secret-label": login: CKR_PIN_INCORRECT`
	down.SetHSMDown(reason)

	type view struct {
		name    string
		trusted bool
		remote  string
		headers []string
		detail  bool
	}
	views := []view{
		{"anonymous, remote", false, "192.0.2.10:4000", nil, false},
		{"loopback, direct", false, "127.0.0.1:4000", nil, true},
		{"loopback, IPv6", false, "[::1]:4000", nil, true},
		{"loopback through a proxy", false, "127.0.0.1:4000", []string{"X-Forwarded-For", "192.0.2.10"}, false},
		{"loopback through a proxy (Via)", false, "127.0.0.1:4000", []string{"Via", "1.1 proxy"}, false},
		{"loopback in trusted-proxy mode", true, "127.0.0.1:4000", nil, false},
		{"remote with a token", false, "192.0.2.10:4000", []string{"Authorization", "Bearer " + tok}, true},
		{"remote with a revoked-looking token", false, "192.0.2.10:4000", []string{"Authorization", "Bearer hsmca_" + strings.Repeat("A", 43)}, false},
		{"remote with an admin certificate", true, "192.0.2.10:4000", []string{"X-APP-CERTIFICATE", admin.B64()}, true},
		{"remote with an unknown certificate", true, "192.0.2.10:4000", []string{"X-APP-CERTIFICATE", stranger.B64()}, false},
	}
	for _, v := range views {
		t.Run(v.name, func(t *testing.T) {
			// Not ready.
			h := api.Router(api.Options{Engine: down, Logger: quiet, TrustedProxy: v.trusted})
			rec := rawDo(h, "GET", "/readyz", v.remote, "", v.headers...)
			require.Equal(t, http.StatusServiceUnavailable, rec.Code)
			var m map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &m))
			assert.Equal(t, "not ready", m["status"])
			assert.Equal(t, []any{"hsm"}, m["failing"])
			if v.detail {
				assert.Contains(t, m["checks"].(map[string]any)["hsm"], reason, rec.Body.String())
			} else {
				assert.JSONEq(t, `{"status":"not ready","failing":["hsm"]}`, rec.Body.String())
			}

			// Ready.
			h = api.Router(api.Options{Engine: env.Engine, Logger: quiet, TrustedProxy: v.trusted})
			rec = rawDo(h, "GET", "/readyz", v.remote, "", v.headers...)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			if v.detail {
				assert.JSONEq(t, `{"status":"ready","checks":{"hsm":"ok","store":"ok"}}`, rec.Body.String())
			} else {
				assert.JSONEq(t, `{"status":"ready"}`, rec.Body.String())
			}
		})
	}
}

// The first-administrator bootstrap refuses whatever a web page in a
// browser on the host could send, and whatever a local proxy adds: 403
// in the CZERTAINLY envelope, and no administrator is created.
func TestLocalAdminsRefusesBrowsersAndProxies(t *testing.T) {
	env := apitest.New(t, "bolt")
	h := api.Router(api.Options{Engine: env.Engine, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	first := testpki.NewCA(t, "CA").Issue(t, testpki.Options{CommonName: "first"})
	body := mustJSON(t, map[string]any{"adminCertificate": first.B64(), "username": "first", "name": "F", "surname": "S",
		"email": "first@example.com", "role": "superAdministrator"})
	const local = "127.0.0.1:40000"
	jsonCT := []string{"Content-Type", "application/json"}

	refused := map[string][]string{
		"Origin of a page":                 append([]string{"Origin", "https://evil.example"}, jsonCT...),
		"Origin null":                      append([]string{"Origin", "null"}, jsonCT...),
		"Origin of localhost":              append([]string{"Origin", "http://127.0.0.1:8080"}, jsonCT...),
		"Sec-Fetch-Site cross-site":        append([]string{"Sec-Fetch-Site", "cross-site"}, jsonCT...),
		"Sec-Fetch-Site same-site":         append([]string{"Sec-Fetch-Site", "same-site"}, jsonCT...),
		"Sec-Fetch-Site same-origin":       append([]string{"Sec-Fetch-Site", "same-origin"}, jsonCT...),
		"no Content-Type":                  nil,
		"text/plain":                       {"Content-Type", "text/plain"},
		"form":                             {"Content-Type", "application/x-www-form-urlencoded"},
		"multipart":                        {"Content-Type", "multipart/form-data; boundary=x"},
		"+json is not application/json":    {"Content-Type", "application/merge-patch+json"},
		"unparseable Content-Type":         {"Content-Type", "application/json; ;"},
		"Host of another name (rebinding)": append([]string{"Host", "evil.example:8080"}, jsonCT...),
	}
	for _, hdr := range []string{"Via", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
		"X-Forwarded-Server", "X-Original-Forwarded-For", "Forwarded", "X-Real-IP", "X-Client-IP", "True-Client-IP",
		"CF-Connecting-IP", "Fastly-Client-IP", "X-Cluster-Client-IP", "Client-IP", "X-ProxyUser-Ip", "X-Original-URL",
		"X-Envoy-External-Address", "X-APP-CERTIFICATE"} {
		refused["proxy header "+hdr] = append([]string{hdr, "192.0.2.1"}, jsonCT...)
	}
	for name, headers := range refused {
		rec := rawDo(h, "POST", "/v1/local/admins", local, body, headers...)
		assert.Equal(t, http.StatusForbidden, rec.Code, "%s: %s", name, rec.Body)
		checkFamilyEnvelope(t, "czertainly", rec.Code, rec.Body.Bytes())
	}
	list, err := env.Admins.List(context.Background())
	require.NoError(t, err)
	require.Empty(t, list, "no refused request created an administrator")

	// What the ops tools send is accepted: JSON (with a charset), a
	// loopback Host by name, and Sec-Fetch-Site: none (typed by the user).
	rec := rawDo(h, "POST", "/v1/local/admins", local, body, "Content-Type", "application/json; charset=utf-8",
		"Host", "localhost:8080", "Sec-Fetch-Site", "none", "User-Agent", "curl/8")
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
}

// An imported key of an odd size signs under the fixed key_algorithm
// value RSA_OTHER: it adds no series of its own.
func TestOddKeySizeAddsNoSeries(t *testing.T) {
	env := apitest.New(t, "bolt")
	k := newHostileKit(t)
	tenant := "acme"
	tok := env.NewToken(tenant, signer.RoleAdmin)
	key, err := rsa.GenerateKey(rand.Reader, 2049)
	require.NoError(t, err)
	body := k.apigBody("odd_size", k.selfSigned(key, nil, nil), k.keyPEM(key))
	r := env.Do("POST", "/v2/"+tenant+"/apigw/certificates", tok, body)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	id := r.Map(t)["id"].(string)
	r = env.Do("POST", "/v1/keys/"+id+"/sign", tok, map[string]any{"message": base64.StdEncoding.EncodeToString([]byte("odd"))})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))

	out := scrape(t, env)
	assert.Contains(t, out, `hsmca_signing_duration_seconds_count{key_algorithm="RSA_OTHER",operation="key_sign"} 1`)
	assert.NotContains(t, out, "RSA2049")
	for _, line := range strings.Split(out, "\n") {
		if m := regexp.MustCompile(`key_algorithm="([^"]*)"`).FindStringSubmatch(line); m != nil {
			assert.Contains(t, []string{"EC256", "EC384", "EC521", "RSA2048", "RSA3072", "RSA4096", "ED25519", "RSA_OTHER", "OTHER"}, m[1])
		}
	}
}
