package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/dts"
)

// TestHSMStalledAnswers503InEachFamily stops the p11-kit server in front
// of the daemon's token (SIGSTOP: the socket stays open, calls hang) under
// load. Every family's request that needs the token answers 503 in the
// family's envelope instead of hanging, /readyz names the HSM, and after
// SIGCONT the same requests succeed again with no goroutine left behind.
func TestHSMStalledAnswers503InEachFamily(t *testing.T) {
	tok := testenv.NewTokenSpec(t, testenv.TokenP11Kit)
	tok.Setenv(t)
	p := newPCA(t, "bolt", apitest.Options{Spec: &tok, DTS: []dts.Option{dts.IssuerAltName(testIAN)},
		HSM: func(c *hsm.Config) { c.CallTimeout, c.PoolWaitTimeout, c.PoolSize = time.Second, time.Second, 4 }})
	admin := p.NewToken("t1", signer.RoleAdmin)
	dtsTok := p.NewToken("t1", signer.RoleDTSProvider)
	key := createKey(t, p.Env, admin, "EC256")
	root := p.createRoot("Stall Root")
	f := &apigFixture{t: t, env: p.Env, o: newOSSL(t), tenant: "proj1", tok: p.NewToken("proj1", signer.RoleCAOperator)}
	certs := []pair{f.o.selfSigned("ec", "stall-1.example.com"), f.o.selfSigned("ec", "stall-2.example.com")}

	type call struct {
		family string
		do     func(n int) *apitest.Response
		ok     int
	}
	calls := []call{
		{"native", func(int) *apitest.Response {
			return p.Do("POST", "/v1/keys/"+key.ID+"/sign", admin, map[string]any{"algorithm": "ES256", "message": b64([]byte("m"))})
		}, http.StatusOK},
		{"native", func(int) *apitest.Response {
			return p.Do("POST", caPath, dtsTok, map[string]any{"organisationName": "Stall Inc."})
		}, http.StatusCreated},
		{"pca", func(int) *apitest.Response {
			return p.do("POST", pcaCerts, map[string]any{"issuer_id": root, "distinguished_name": map[string]any{"common_name": "stall.example.com"},
				"validity": map[string]any{"type": "DAY", "value": 30}, "key_algorithm": "EC256"})
		}, http.StatusOK},
		{"apig", func(n int) *apitest.Response {
			return f.do("POST", f.base(), certBody(fmt.Sprintf("stall_cert_%d", n), certs[n%2]))
		}, http.StatusOK},
	}
	for _, c := range calls {
		r := c.do(0)
		require.Equal(t, c.ok, r.Status, "%s before the stall: %s", c.family, r.Body)
	}
	goroutines := runtime.NumGoroutine()

	tok.P11Kit.Pause()
	var wg sync.WaitGroup
	for i, c := range calls {
		for n := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := c.do(10*i + n + 1)
				if assert.Equal(t, http.StatusServiceUnavailable, r.Status, "%s while the token is stalled: %s", c.family, r.Body) {
					checkFamilyEnvelope(t, c.family, r.Status, r.Body)
				}
			}()
		}
	}
	wg.Wait()
	r := p.Do("GET", "/readyz", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
	var ready struct {
		Failing []string          `json:"failing"`
		Checks  map[string]string `json:"checks"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &ready))
	assert.True(t, slices.Contains(ready.Failing, "hsm"), "%s", r.Body)
	assert.Contains(t, ready.Checks["hsm"], "circuit open")
	assert.True(t, p.HSM.BreakerOpen())

	tok.P11Kit.Resume()
	require.Eventually(t, func() bool { return p.Do("GET", "/readyz", "", nil).Status == http.StatusOK },
		20*time.Second, 50*time.Millisecond)
	for i, c := range calls {
		r := c.do(100 + i)
		assert.Equal(t, c.ok, r.Status, "%s after the stall: %s", c.family, r.Body)
	}
	require.Eventually(t, func() bool {
		_, inUse := p.HSM.Sessions()
		return inUse == 0 && runtime.NumGoroutine() <= goroutines+5
	}, 10*time.Second, 50*time.Millisecond, "goroutines left behind: %d (was %d)", runtime.NumGoroutine(), goroutines)
}
