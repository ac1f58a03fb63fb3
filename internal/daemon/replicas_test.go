package daemon

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/chaos"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/apig"
	"github.com/hsmca/hsmca/signer/keys"
	"github.com/hsmca/hsmca/signer/pca"
)

// twoReplicas starts two daemons on one redis-server and one SoftHSM2
// token, as two hosts of one deployment would run.
func twoReplicas(t *testing.T, quotas map[string]int64) (*Daemon, *Daemon) {
	t.Helper()
	tok := testenv.NewToken(t)
	r := testenv.StartRedis(t)
	cfg := noRateLimit(testConfig(t, tok))
	cfg.Store.Backend, cfg.Store.RedisURL = "redis", r.URL()
	cfg.Quotas = quotas
	a, _ := startDaemon(t, cfg, nil)
	cfg2 := *cfg
	cfg2.DataDir = t.TempDir()
	cfg2.AdminSocket = filepath.Join(cfg2.DataDir, "admin.sock")
	b, _ := startDaemon(t, &cfg2, nil)
	for _, d := range []*Daemon{a, b} {
		waitStatus(t, "http://"+d.Addr()+"/readyz", 200, 30*time.Second)
	}
	return a, b
}

// scrape reads a daemon's /metrics.
func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(raw)
}

// on is a client of one replica with another client's token.
func on(d *Daemon, c *apiClient) *apiClient {
	return &apiClient{base: "http://" + d.Addr(), token: c.token, http: c.http}
}

// race sends n creations split between the replicas at once and returns
// how many succeeded and the statuses of the others.
func race(n int, clients []*apiClient, create func(c *apiClient, i int) answer) (int, map[int]int) {
	var (
		mu     sync.Mutex
		ok     int
		others = map[int]int{}
		wg     sync.WaitGroup
		start  = make(chan struct{})
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			a := create(clients[i%len(clients)], i)
			mu.Lock()
			defer mu.Unlock()
			if a.err == nil && a.status < 300 {
				ok++
			} else {
				others[a.status]++
			}
		}(i)
	}
	close(start)
	wg.Wait()
	return ok, others
}

// Racing creations through both replicas never take a tenant past its
// quota: the reservation and the insert are one Redis script. The fixed
// DTS limit (3 roots) and configured limits of keys, private CAs and APIG
// certificates each hold, and every counter ends equal to the records.
func TestReplicasShareQuotas(t *testing.T) {
	a, b := twoReplicas(t, map[string]int64{keys.QuotaKeys: 5, pca.QuotaCAs: 4, apig.QuotaCertificates: 3})
	const tenant = "shared"
	ca := newClient(t, a, tenant)
	clients := []*apiClient{ca, on(b, ca)}
	pcaDN := map[string]any{"common_name": "Race Root", "country": "DE", "state": "Berlin", "locality": "Berlin",
		"organization": "hsmca tests", "organizational_unit": "PKI"}
	for _, tc := range []struct {
		name   string
		limit  int
		refuse int
		create func(c *apiClient, i int) answer
		list   string
		items  string
	}{
		{"dts roots", 3, 409, func(c *apiClient, i int) answer {
			return c.do("POST", "/v1/ecosystems/certificates/ca", map[string]any{"organisationName": fmt.Sprintf("Race %d", i)})
		}, "/v1/ecosystems/certificates/ca", "data"},
		{"keys", 5, 409, func(c *apiClient, i int) answer {
			return c.do("POST", "/v1/keys", map[string]any{"algorithm": "EC256"})
		}, "/v1/keys", "data"},
		{"pca cas", 4, 400, func(c *apiClient, i int) answer {
			return c.do("POST", "/v1/private-certificate-authorities", map[string]any{"type": "ROOT",
				"distinguished_name": pcaDN, "key_algorithm": "EC256", "signature_algorithm": "SHA256",
				"validity": map[string]any{"type": "YEAR", "value": 5}})
		}, "/v1/private-certificate-authorities?limit=100", "certificate_authorities"},
		{"apig certificates", 3, 400, func(c *apiClient, i int) answer {
			cert, key := selfSignedPEM(t)
			return c.do("POST", "/v2/"+tenant+"/apigw/certificates", map[string]any{
				"name": fmt.Sprintf("race_%d", i), "cert_content": cert, "private_key": key})
		}, "/v2/" + tenant + "/apigw/certificates", "certs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, others := race(12, clients, tc.create)
			assert.Equal(t, tc.limit, ok, "successes past the quota (others: %v)", others)
			assert.Equal(t, map[int]int{tc.refuse: 12 - tc.limit}, others, "the rest are refused by the quota")
			for _, c := range clients {
				l := c.do("GET", tc.list, nil)
				require.Equal(t, 200, l.status, "%s", l.body)
				items, _ := l.m()[tc.items].([]any)
				assert.Len(t, items, tc.limit, "each replica lists exactly the quota's worth")
			}
		})
	}
	_, bad, err := chaos.CheckStore(context.Background(), a.store, tenant)
	require.NoError(t, err)
	assert.Empty(t, bad, "quota counters equal the records")
}

// A change made through one replica is enforced by the other on its very
// next request: nothing is cached across requests.
func TestReplicasSeeChangesAtOnce(t *testing.T) {
	a, b := twoReplicas(t, nil)
	const tenant = "shared"
	ca := newClient(t, a, tenant)
	cb := on(b, ca)
	msg := map[string]any{"message": base64.StdEncoding.EncodeToString([]byte("hello"))}

	t.Run("key disabled", func(t *testing.T) {
		k := ca.do("POST", "/v1/keys", map[string]any{"algorithm": "EC256"})
		require.Equal(t, 201, k.status, "%s", k.body)
		id := k.m()["id"].(string)
		require.Equal(t, 200, cb.do("POST", "/v1/keys/"+id+"/sign", msg).status, "B signs while enabled")
		require.Equal(t, 200, ca.do("POST", "/v1/keys/"+id+"/disable", nil).status)
		s := cb.do("POST", "/v1/keys/"+id+"/sign", msg)
		assert.Equal(t, 409, s.status, "B refuses a key A disabled: %s", s.body)
		assert.Equal(t, "Conflict", s.m()["code"])
		require.Equal(t, 200, cb.do("POST", "/v1/keys/"+id+"/enable", nil).status)
		assert.Equal(t, 200, ca.do("POST", "/v1/keys/"+id+"/sign", msg).status, "A signs once B enabled it")
	})

	t.Run("token revoked", func(t *testing.T) {
		ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
		secret, tok, err := a.Engine().CreateToken(ctx, tenant, []string{signer.RoleAdmin}, nil)
		require.NoError(t, err)
		ta := &apiClient{base: "http://" + a.Addr(), token: secret, http: &http.Client{Timeout: 30 * time.Second}}
		tb := on(b, ta)
		require.Equal(t, 200, tb.do("GET", "/v1/keys", nil).status, "B accepts the token")
		k := ta.do("POST", "/v1/keys", map[string]any{"algorithm": "EC256"})
		require.Equal(t, 201, k.status, "%s", k.body)
		sign := "/v1/keys/" + k.m()["id"].(string) + "/sign"
		// The second signature runs beside the token's check (on by
		// default with Redis), and so does the first one after the
		// revocation: its signature is dropped.
		for range 2 {
			require.Equal(t, 200, tb.do("POST", sign, msg).status)
		}
		require.NoError(t, a.Engine().RevokeToken(ctx, tok.ID))
		for _, c := range []*apiClient{tb, ta} {
			for _, r := range []answer{c.do("POST", sign, msg), c.do("GET", "/v1/keys", nil)} {
				assert.Equal(t, 401, r.status, "a revoked token is refused: %s", r.body)
				assert.Equal(t, "Unauthorized", r.m()["code"])
				assert.NotContains(t, string(r.body), "signature")
			}
		}
		assert.Contains(t, scrape(t, "http://"+b.Addr()), `hsmca_credential_checks_ahead_total{outcome="refused"} 1`)
		evs, err := a.Engine().ListEvents(ctx, tenant, 0, 0)
		require.NoError(t, err)
		signed := 0
		for _, e := range evs {
			if e.Operation == "KEY_SIGN" && e.Principal == "token:"+tok.ID {
				signed++
			}
		}
		assert.Equal(t, 2, signed, "the answered signatures alone are recorded")
	})

	t.Run("private CA disabled", func(t *testing.T) {
		root := createPCARoot(t, ca)
		issue := func(c *apiClient) answer {
			return c.do("POST", "/v1/private-certificates", map[string]any{"issuer_id": root,
				"distinguished_name":        map[string]any{"common_name": "leaf.replicas.example"},
				"validity":                  map[string]any{"type": "DAY", "value": 30},
				"subject_alternative_names": []map[string]any{{"type": "DNS", "value": "leaf.replicas.example"}}})
		}
		require.Equal(t, 200, issue(cb).status, "B issues under an ACTIVED CA")
		require.Equal(t, 204, ca.do("POST", "/v1/private-certificate-authorities/"+root+"/disable", nil).status)
		r := issue(cb)
		assert.Equal(t, 400, r.status, "B refuses to issue under a CA A disabled: %s", r.body)
		assert.Len(t, r.m(), 2, "CCM envelope: %s", r.body)
		assert.NotEmpty(t, r.m()["error_code"])
		require.Equal(t, 204, cb.do("POST", "/v1/private-certificate-authorities/"+root+"/enable", nil).status)
		assert.Equal(t, 200, issue(ca).status, "A issues once B enabled it")
	})

	t.Run("DTS root deactivated", func(t *testing.T) {
		root := ca.do("POST", "/v1/ecosystems/certificates/ca", map[string]any{"organisationName": "Replica Inc."})
		require.Equal(t, 201, root.status, "%s", root.body)
		rootID := root.m()["id"].(string)
		s := cb.do("POST", "/v1/ecosystems/certificates/vical-signers", map[string]any{"caId": rootID})
		require.Equal(t, 201, s.status, "%s", s.body)
		sid := s.m()["id"].(string)
		require.Equal(t, 200, ca.do("PUT", "/v1/ecosystems/certificates/vical-signers/"+sid, map[string]any{"active": true}).status)
		payload := map[string]any{"payload": base64.StdEncoding.EncodeToString([]byte("vical"))}
		require.Equal(t, 200, cb.do("POST", "/v1/ecosystems/certificates/vical-signers/"+sid+"/sign", payload).status)
		require.Equal(t, 200, ca.do("PUT", "/v1/ecosystems/certificates/ca/"+rootID, map[string]any{"active": false}).status)
		r := cb.do("POST", "/v1/ecosystems/certificates/vical-signers/"+sid+"/sign", payload)
		assert.Equal(t, 409, r.status, "B refuses to sign under a root A deactivated: %s", r.body)
		assert.Equal(t, "Conflict", r.m()["code"])
	})
}
