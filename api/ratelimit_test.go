package api_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/testenv"
)

// A rate so low that no test earns a new request while it runs: only the
// burst is ever admitted, whatever the machine's speed.
const testRate = 0.001

func limited(burst int) apitest.Options {
	return apitest.Options{Configure: func(o *api.Options) {
		o.RateLimit = api.RateLimit{RequestsPerSecond: testRate, Burst: burst}
	}}
}

// checkThrottled asserts a 429 with a whole-second Retry-After in family's
// envelope.
func checkThrottled(t *testing.T, family string, r *apitest.Response) {
	t.Helper()
	require.Equal(t, http.StatusTooManyRequests, r.Status, "%s: %s", family, r.Body)
	checkFamilyEnvelope(t, family, r.Status, r.Body)
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q is not whole seconds", r.Header.Get("Retry-After"))
	assert.Positive(t, secs)
	assert.LessOrEqual(t, secs, 1000, "one request is earned every 1000 s")
}

// TestRateLimitPerCredential: on bolt, once a token has used its burst,
// every family answers it 429 in its own envelope; another token, an
// administrator and unauthenticated routes are not affected; an
// administrator's certificate has a limit of its own.
func TestRateLimitPerCredential(t *testing.T) {
	const burst = 3
	h := newHostileEnv(t, "bolt", limited(burst))
	other := h.NewToken(h.tenant, "admin")

	for i := 0; i < burst; i++ {
		r := h.call("GET", "/v1/keys", nil, false)
		require.Equal(t, http.StatusOK, r.Status, "request %d of the burst: %s", i+1, r.Body)
	}
	for _, c := range []struct{ family, method, path string }{
		{"native", "GET", "/v1/keys"},
		{"native", "GET", "/v1/ecosystems/certificates/ca"},
		{"native", "POST", "/v1/keys"},
		{"pca", "GET", pcaCAs},
		{"pca", "POST", pcaCerts + "/csr/parse"},
		{"apig", "GET", "/v2/" + h.tenant + "/apigw/certificates"},
	} {
		var body any
		if c.method == "POST" {
			body = map[string]any{}
		}
		checkThrottled(t, c.family, h.call(c.method, c.path, body, false))
	}
	// A refused request is not counted against the next window, and the
	// same token with X-Auth-Token is the same credential.
	r := h.Do("GET", pcaCAs, "", nil, "X-Auth-Token", h.token)
	checkThrottled(t, "pca", r)

	r = h.Do("GET", "/v1/keys", other, nil)
	assert.Equal(t, http.StatusOK, r.Status, "another token has its own limit: %s", r.Body)
	r = h.Do("GET", "/healthz", "", nil)
	assert.Equal(t, http.StatusOK, r.Status, "unauthenticated routes are not limited")

	for i := 0; i < burst; i++ {
		r := h.call("GET", "/v1/admins", nil, true)
		require.Equal(t, http.StatusOK, r.Status, "admin request %d: %s", i+1, r.Body)
	}
	checkThrottled(t, "czertainly", h.call("GET", "/v1/admins", nil, true))
	checkThrottled(t, "native", h.call("GET", "/v1/tokens", nil, true))

	// A bad token is refused as before, however often it is sent: an
	// unknown credential is never answered 429, which would tell a
	// guesser more than 401 does.
	for _, bad := range []string{"not-a-token", "hsmca_" + strings.Repeat("A", 43)} {
		for i := 0; i < burst+2; i++ {
			r = h.Do("GET", "/v1/keys", bad, nil)
			assert.Equal(t, http.StatusUnauthorized, r.Status, "%q, request %d", bad, i+1)
		}
	}
}

// TestRateLimitOffByDefault: without a configured rate nothing is limited.
func TestRateLimitOffByDefault(t *testing.T) {
	h := newHostileEnv(t, "bolt")
	for i := 0; i < 50; i++ {
		r := h.call("GET", "/v1/keys", nil, false)
		require.Equal(t, http.StatusOK, r.Status, "request %d: %s", i+1, r.Body)
	}
}

// TestRateLimitSharedAcrossReplicas: two daemons on one Redis share each
// token's limit, whichever replica a request reaches.
func TestRateLimitSharedAcrossReplicas(t *testing.T) {
	const burst = 4
	r := testenv.StartRedis(t)
	tok := testenv.NewToken(t)
	o := limited(burst)
	o.Redis, o.Token = r, tok
	a := newHostileEnv(t, "redis", o)
	b := apitest.New(t, "redis", o)

	admitted := 0
	for i := 0; i < burst; i++ {
		env := a.Env
		if i%2 == 1 {
			env = b
		}
		resp := env.Do("GET", "/v1/keys", a.token, nil)
		require.Equal(t, http.StatusOK, resp.Status, "request %d: %s", i+1, resp.Body)
		admitted++
	}
	assert.Equal(t, burst, admitted)
	checkThrottled(t, "native", b.Do("GET", "/v1/keys", a.token, nil))
	checkThrottled(t, "pca", a.Do("GET", pcaCAs, a.token, nil))
	checkThrottled(t, "apig", b.Do("GET", "/v2/"+a.tenant+"/apigw/certificates", a.token, nil))

	// The other replica's own tokens are not affected.
	fresh := b.NewToken(a.tenant, "admin")
	assert.Equal(t, http.StatusOK, a.Do("GET", "/v1/keys", fresh, nil).Status)
}
