package api_test

import (
	"context"
	"crypto"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
)

// gatedHSM holds every RSA key generation at a gate: the operation then
// keeps its slot of the heavy-work pool for as long as the test wants.
type gatedHSM struct {
	signer.HSM
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedHSM) Generate(ctx context.Context, id, label string, alg hsm.Algorithm) (crypto.Signer, error) {
	if strings.HasPrefix(string(alg), "RSA") {
		g.entered <- struct{}{}
		<-g.gate
	}
	return g.HSM.Generate(ctx, id, label, alg)
}

// A tenant's costly operations beyond the pool's bounds answer 503 with
// Retry-After in the family's envelope; another tenant's light work goes
// on meanwhile.
func TestHeavyWorkRefusedInFamilyEnvelope(t *testing.T) {
	g := &gatedHSM{entered: make(chan struct{}, 4), gate: make(chan struct{})}
	env := apitest.New(t, "bolt", apitest.Options{Engine: func(o *signer.Options) {
		g.HSM = o.HSM
		o.HSM = g
		o.HeavyWork = signer.HeavyWork{Concurrency: 1, TenantQueue: 1, MaxWait: time.Minute}
	}})
	acme := env.NewToken("acme", signer.RoleAdmin)
	other := env.NewToken("other", signer.RoleAdmin, signer.RoleSigner)
	rsaRoot := map[string]any{"type": "ROOT", "distinguished_name": pcaFullDN("RSA root"), "key_algorithm": "RSA2048",
		"signature_algorithm": "SHA256", "validity": pcaYears(5)}

	// The first RSA key of acme holds the only slot, the second waits.
	first := make(chan *apitest.Response, 1)
	go func() { first <- env.Do("POST", "/v1/keys", acme, map[string]any{"algorithm": "RSA2048"}) }()
	<-g.entered
	second := make(chan *apitest.Response, 1)
	go func() { second <- env.Do("POST", pcaCAs, "", rsaRoot, "X-Auth-Token", acme) }()
	require.Eventually(t, func() bool {
		r := env.Do("GET", "/metrics", "", nil)
		return strings.Contains(string(r.Body), `hsmca_heavy_operations_waiting{operation="hsm_rsa_keygen"} 1`)
	}, time.Minute, 5*time.Millisecond)

	// A third has no room to wait: 503 at once, in each family's envelope.
	r := env.Do("POST", "/v1/keys", acme, map[string]any{"algorithm": "RSA3072"})
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
	checkFamilyEnvelope(t, "native", r.Status, r.Body)
	assert.Equal(t, "1", r.Header.Get("Retry-After"))
	r = env.Do("POST", pcaCAs, "", rsaRoot, "X-Auth-Token", acme)
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
	checkFamilyEnvelope(t, "pca", r.Status, r.Body)
	assert.Equal(t, "PCA.10010006", r.Map(t)["error_code"])
	assert.Equal(t, "1", r.Header.Get("Retry-After"))

	// Another tenant's light work is not queued behind acme's heavy work.
	r = env.Do("POST", "/v1/keys", other, map[string]any{"algorithm": "EC256"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	digest := base64.StdEncoding.EncodeToString(make([]byte, 32))
	r = env.Do("POST", "/v1/keys/"+r.Map(t)["id"].(string)+"/sign", other, map[string]any{"digest": digest})
	assert.Equal(t, http.StatusOK, r.Status, "%s", r.Body)

	close(g.gate)
	r = <-first
	assert.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	r = <-second
	assert.Equal(t, http.StatusOK, r.Status, "%s", r.Body)

	m := string(env.Do("GET", "/metrics", "", nil).Body)
	assert.Contains(t, m, `hsmca_heavy_operations_refused_total{operation="hsm_rsa_keygen",reason="queue_full"} 2`)
	assert.Contains(t, m, `hsmca_heavy_operations_in_flight{operation="hsm_rsa_keygen"} 0`)
	assert.Contains(t, m, `hsmca_heavy_operations_waiting{operation="hsm_rsa_keygen"} 0`)
	// The refused requests left nothing behind: acme has its one key and
	// its one CA.
	assert.Len(t, env.Do("GET", "/v1/keys", acme, nil).Map(t)["data"], 1)
	assert.EqualValues(t, 1, env.Do("GET", pcaCAs, "", nil, "X-Auth-Token", acme).Map(t)["total"])
}
