package api_test

import (
	"context"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// checksAhead reads hsmca_credential_checks_ahead_total{outcome}.
func checksAhead(env *apitest.Env, outcome string) int {
	var m dto.Metric
	require.NoError(env.T, env.Metrics.CredentialChecksAhead.WithLabelValues(outcome).Write(&m))
	return int(m.GetCounter().GetValue())
}

// beside returns two replicas sharing one Redis and one token, with
// token checks beside the work (overlap_credential_check) and rate.
func beside(t *testing.T, rate api.RateLimit) (a, b *apitest.Env) {
	t.Helper()
	o := apitest.Options{Configure: func(o *api.Options) {
		o.OverlapCredentialCheck = true
		o.RateLimit = rate
	}}
	a = apitest.New(t, "redis", o)
	o.Token, o.Redis = a.Token, a.Redis
	return a, apitest.New(t, "redis", o)
}

// tokenOf mints a token and returns its secret and id.
func tokenOf(t *testing.T, env *apitest.Env, tenant string, roles ...string) (string, string) {
	t.Helper()
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	secret, tok, err := env.Engine.CreateToken(ctx, tenant, roles, nil)
	require.NoError(t, err)
	return secret, tok.ID
}

// outcomes lists the outcomes of op's records in tenant's chain.
func outcomes(t *testing.T, env *apitest.Env, tenant, op string) []string {
	t.Helper()
	evs, err := env.Engine.ListEvents(t.Context(), tenant, 0, 0)
	require.NoError(t, err)
	var got []string
	for _, e := range evs {
		if e.Operation == op {
			got = append(got, e.Outcome)
		}
	}
	return got
}

// TestSigningBesideTheTokenCheck: a signature runs beside the check of a
// token the replica saw valid, the check carried by its event record
// (Redis standalone); the token revoked through another replica
// meanwhile gets 401, the signature made for it is neither answered nor
// recorded, and the next request is checked first.
func TestSigningBesideTheTokenCheck(t *testing.T) {
	a, b := beside(t, api.RateLimit{})
	secret, id := tokenOf(t, a, "t1", signer.RoleAdmin)
	k := createKey(t, a, secret, "EC256")
	digest := sha256.Sum256([]byte("beside"))
	body := map[string]any{"digest": base64.StdEncoding.EncodeToString(digest[:])}
	sign := func() *apitest.Response { return b.Do("POST", "/v1/keys/"+k.ID+"/sign", secret, body) }

	for range 3 {
		r := sign()
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	}
	assert.Equal(t, 2, checksAhead(b, "carried"), "the first request is checked first, the next ones carry their check in their event record")
	assert.Zero(t, checksAhead(b, "confirmed"), "no check of its own")

	require.NoError(t, a.Engine.RevokeToken(signer.WithCaller(t.Context(), signer.Caller{Principal: "ops:test"}), id))
	r := sign()
	require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
	assert.Equal(t, "invalid or expired token", r.Map(t)["message"])
	assert.NotContains(t, string(r.Body), "signature")
	assert.Equal(t, 1, checksAhead(b, "refused"))
	r = sign()
	require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
	assert.Equal(t, 1, checksAhead(b, "refused"), "a refused token is checked first again")
	assert.Equal(t, []string{"SUCCESS", "SUCCESS", "SUCCESS"}, outcomes(t, a, "t1", "KEY_SIGN"),
		"no record of the signature made beside the refused check")
}

// TestRateLimitBesideTheTokenCheck: the request over its token's limit,
// run beside the check, answers 429 with Retry-After and is not recorded.
func TestRateLimitBesideTheTokenCheck(t *testing.T) {
	_, b := beside(t, api.RateLimit{RequestsPerSecond: 0.01, Burst: 3})
	secret, _ := tokenOf(t, b, "t1", signer.RoleAdmin)
	k := createKey(t, b, secret, "EC256") // the first of the burst
	digest := sha256.Sum256([]byte("limited"))
	body := map[string]any{"digest": base64.StdEncoding.EncodeToString(digest[:])}
	for range 2 {
		r := b.Do("POST", "/v1/keys/"+k.ID+"/sign", secret, body)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	}
	r := b.Do("POST", "/v1/keys/"+k.ID+"/sign", secret, body)
	require.Equal(t, http.StatusTooManyRequests, r.Status, string(r.Body))
	assert.NotEmpty(t, r.Header.Get("Retry-After"))
	assert.NotContains(t, string(r.Body), "signature")
	assert.Equal(t, 1, checksAhead(b, "throttled"))
	// The first signature is checked first, the second carries its check
	// (and its count) in its record, the third's carried check finds the
	// token over its limit: nothing is written, and the full check says so.
	assert.Equal(t, 1, checksAhead(b, "carried"))
	assert.Equal(t, []string{"SUCCESS", "SUCCESS"}, outcomes(t, b, "t1", "KEY_SIGN"))
}

// TestIssuanceBesideTheTokenCheck: an issuance from a CSR carries the
// check of a known token in its certificate's create (Redis standalone);
// one for a token revoked meanwhile stores no certificate, uses no quota,
// records nothing and answers 401 in the CCM envelope.
func TestIssuanceBesideTheTokenCheck(t *testing.T) {
	a, b := beside(t, api.RateLimit{})
	secret, id := tokenOf(t, a, "t1", signer.RoleCAOperator)
	pa := &pcaEnv{Env: a, t: t, tok: secret}
	pb := &pcaEnv{Env: b, t: t, tok: secret}
	root := pa.createRoot("Beside Root")
	body := map[string]any{"issuer_id": root, "validity": map[string]any{"type": "DAY", "value": 30},
		"csr": csrPEM(t, ecKey(t, elliptic.P256()), "beside.example.com")}
	for range 2 {
		pb.ok(pb.do("POST", pcaCerts+"/csr", body), http.StatusOK)
	}
	require.Equal(t, 1, checksAhead(b, "carried"), "the second's check went with its certificate's create")

	require.NoError(t, a.Engine.RevokeToken(signer.WithCaller(t.Context(), signer.Caller{Principal: "ops:test"}), id))
	r := pb.do("POST", pcaCerts+"/csr", body)
	require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
	assert.NotContains(t, string(r.Body), "certificate_id")
	assert.Equal(t, 1, checksAhead(b, "refused"))
	requireStoredCerts(t, a, 2)
	assert.Equal(t, []string{"SUCCESS", "SUCCESS"}, outcomes(t, a, "t1", "PCA_CERTIFICATE_ISSUE_CSR"))
}

// guardChecks reads hsmca_credential_guard_checks_total{outcome}.
func guardChecks(env *apitest.Env, outcome string) int {
	var m dto.Metric
	require.NoError(env.T, env.Metrics.CredentialGuardChecks.WithLabelValues(outcome).Write(&m))
	return int(m.GetCounter().GetValue())
}

// TestTokenCheckedByAGuard: on any route, a token a replica checked in
// full lately is checked first by a guard alone (its record's version and
// its rate-limit count, one script); over its limit it gets 429 with
// Retry-After, and revoked through another replica 401, from the full
// check the failed guard leads to.
func TestTokenCheckedByAGuard(t *testing.T) {
	a, b := beside(t, api.RateLimit{RequestsPerSecond: 0.01, Burst: 4})
	secret, id := tokenOf(t, b, "t1", signer.RoleAdmin)
	list := func() *apitest.Response { return b.Do("GET", "/v1/keys", secret, nil) }
	r := list()
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	firstUse(t, b, id)
	r = list() // checked in full again: its record changed with its first use
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	failed := guardChecks(b, "failed")
	for range 2 {
		r = list()
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	}
	assert.Equal(t, 2, guardChecks(b, "held"), "checked by the guard")
	r = list()
	require.Equal(t, http.StatusTooManyRequests, r.Status, string(r.Body))
	assert.NotEmpty(t, r.Header.Get("Retry-After"))
	assert.Equal(t, failed+1, guardChecks(b, "failed"))

	secret2, id2 := tokenOf(t, b, "t1", signer.RoleAdmin)
	r = b.Do("GET", "/v1/keys", secret2, nil)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	firstUse(t, b, id2)
	for range 2 {
		r = b.Do("GET", "/v1/keys", secret2, nil)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	}
	held, failed := guardChecks(b, "held"), guardChecks(b, "failed")
	ops := signer.WithCaller(t.Context(), signer.Caller{Principal: "ops:test"})
	require.NoError(t, a.Engine.RevokeToken(ops, id2))
	r = b.Do("GET", "/v1/keys", secret2, nil)
	require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
	assert.Equal(t, held, guardChecks(b, "held"))
	assert.Equal(t, failed+1, guardChecks(b, "failed"))
	r = b.Do("GET", "/v1/keys", secret2, nil)
	require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
	assert.Equal(t, failed+1, guardChecks(b, "failed"), "a refused token is checked in full from then on")
}

// firstUse waits until the token's first use is recorded in its record.
func firstUse(t *testing.T, env *apitest.Env, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		rec, err := env.Engine.Store().Get(t.Context(), "apitoken", store.PlatformTenant, id)
		require.NoError(t, err)
		var tok signer.Token
		require.NoError(t, json.Unmarshal(rec.Data, &tok))
		return tok.LastUsed != nil
	}, 5*time.Second, 10*time.Millisecond)
}
