package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
)

func TestOperationalEndpoints(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend)
			r := env.Do("GET", "/healthz", "", nil)
			assert.Equal(t, 200, r.Status)
			r = env.Do("GET", "/readyz", "", nil)
			require.Equal(t, 200, r.Status, string(r.Body))
			assert.Equal(t, "ready", r.Map(t)["status"])
			r = env.Do("GET", "/metrics", "", nil)
			assert.Equal(t, 200, r.Status)
			assert.Contains(t, string(r.Body), "hsmca_build_info")
			assert.Contains(t, string(r.Body), `hsmca_http_requests_total{code="2xx",method="GET",route="/readyz"}`)
		})
	}
}

func TestRequestIDEchoedOrMade(t *testing.T) {
	env := apitest.New(t, "bolt")
	r := env.Do("GET", "/healthz", "", nil, "X-Request-Id", "abc-123")
	assert.Equal(t, "abc-123", r.Header.Get("X-Request-Id"))
	r = env.Do("GET", "/healthz", "", nil, "X-Request-Id", "bad id\twith spaces")
	assert.Len(t, r.Header.Get("X-Request-Id"), 24)
}

func TestUnknownRouteAndMethod(t *testing.T) {
	env := apitest.New(t, "bolt")
	r := env.Do("GET", "/v1/nothing-here", "", nil)
	assert.Equal(t, 404, r.Status)
	assert.Equal(t, "NotFound", r.Map(t)["code"])
	r = env.Do("DELETE", "/healthz", "", nil)
	assert.Equal(t, 405, r.Status)
}

func TestEventsNeedsCredentialAndRole(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend)
			r := env.Do("GET", "/v1/events", "", nil)
			assert.Equal(t, 401, r.Status)
			assert.Equal(t, "Unauthorized", r.Map(t)["code"])

			r = env.Do("GET", "/v1/events", "hsmca_not-a-real-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", nil)
			assert.Equal(t, 401, r.Status)

			signerTok := env.NewToken("t1", "signer")
			r = env.Do("GET", "/v1/events", signerTok, nil)
			assert.Equal(t, 403, r.Status)
			assert.Equal(t, "Forbidden", r.Map(t)["code"])

			auditor := env.NewToken("t1", "auditor")
			r = env.Do("GET", "/v1/events", auditor, nil, "X-Request-Id", "req-1")
			require.Equal(t, 200, r.Status, string(r.Body))
			var page struct {
				Data []map[string]any `json:"data"`
			}
			r.JSON(t, &page)
			require.NotEmpty(t, page.Data, "token creations are events of the tenant")
			assert.Equal(t, "API_TOKEN_CREATE", page.Data[0]["operation"])
			assert.Equal(t, "SUCCESS", page.Data[0]["outcome"])

			r = env.Do("GET", "/v1/events?limit=0", auditor, nil)
			assert.Equal(t, 400, r.Status)
			m := r.Map(t)
			assert.Equal(t, "BadRequest", m["code"])
			d := m["details"].([]any)[0].(map[string]any)
			assert.Equal(t, "limit", d["param"])
			assert.Equal(t, "query", d["location"])
		})
	}
}

func TestBodyLimit(t *testing.T) {
	env := apitest.New(t, "bolt")
	tok := env.NewToken("t1", "auditor")
	big := strings.Repeat("a", 1<<20+1)
	req, err := http.NewRequest("GET", env.Server.URL+"/v1/events", strings.NewReader(big))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}

// TestRequestsAreLogged: each request's access line, written by the
// daemon's handler directly, carries its method, route, status, duration,
// request id and principal, and no credential.
func TestRequestsAreLogged(t *testing.T) {
	env := apitest.New(t, "bolt")
	tok := env.NewToken("acme", "admin")
	r := env.Do("GET", "/v1/keys", tok, nil)
	require.Equal(t, 200, r.Status, string(r.Body))
	id := r.Header.Get("X-Request-Id")
	require.NotEmpty(t, id)
	var line map[string]any
	for _, l := range strings.Split(env.Logs.String(), "\n") {
		if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, id) {
			require.NoError(t, json.Unmarshal([]byte(l), &line), l)
		}
	}
	require.NotNil(t, line, "the request's line")
	assert.Equal(t, "INFO", line["level"])
	assert.Equal(t, "GET", line["method"])
	assert.Equal(t, "/v1/keys", line["route"])
	assert.Equal(t, 200.0, line["status"])
	assert.IsType(t, 0.0, line["duration_ms"])
	assert.Contains(t, line["principal"], "token:")
	assert.NotContains(t, env.Logs.String(), tok)
}

func TestServerErrorsLogTheirCause(t *testing.T) {
	env := apitest.New(t, "bolt")
	tok := env.NewToken("acme", "admin")
	require.NoError(t, env.Store.Close())
	r := env.Do("GET", "/v1/keys", tok, nil)
	require.Equal(t, 503, r.Status, string(r.Body))
	assert.NotContains(t, string(r.Body), "bolt", "the cause stays out of the answer")
	logs := env.Logs.String()
	assert.Contains(t, logs, `"msg":"request failed"`)
	assert.Contains(t, logs, `"route":"/v1/keys"`)
	assert.NotContains(t, logs, tok)
}
