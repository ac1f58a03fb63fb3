package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/admins"
	"github.com/hsmca/hsmca/store"
)

const certHeader = "X-APP-CERTIFICATE"

// fixture is a daemon in trusted-proxy mode (so tests can present admin
// certificates in X-APP-CERTIFICATE without TLS), an enabled
// superAdministrator and an enabled administrator.
type fixture struct {
	t     *testing.T
	env   *apitest.Env
	ca    *testpki.CA
	super *testpki.Cert
	admin *testpki.Cert
	// superID and adminID are the admins' uuids.
	superID, adminID string
}

func newFixture(t *testing.T, backend string, opts ...apitest.Options) *fixture {
	t.Helper()
	var o apitest.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	o.Configure = func(ro *api.Options) { ro.TrustedProxy = true }
	f := &fixture{t: t, env: apitest.New(t, backend, o), ca: testpki.NewCA(t, "hsmca admin CA")}
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	f.super = f.ca.Issue(t, testpki.Options{CommonName: "root"})
	a, err := f.env.Admins.Bootstrap(ctx, admins.Input{Username: "root", Certificate: f.super.B64()},
		admins.BootstrapOptions{ProfileOptional: true, Recover: true})
	require.NoError(t, err)
	f.superID = a.UUID
	f.admin = f.ca.Issue(t, testpki.Options{CommonName: "reader"})
	f.adminID = f.createAdmin(f.admin, "reader", signer.RoleAdministrator, true)
	return f
}

// as returns the header arguments that present c.
func as(c *testpki.Cert) []string { return []string{certHeader, c.B64()} }

// doAs sends a request as an administrator.
func (f *fixture) doAs(c *testpki.Cert, method, path string, body any) *apitest.Response {
	f.t.Helper()
	return f.env.Do(method, path, "", body, as(c)...)
}

func (f *fixture) createAdmin(c *testpki.Cert, username, role string, enabled bool) string {
	f.t.Helper()
	r := f.doAs(f.super, "POST", "/v1/admins", map[string]any{
		"adminCertificate": c.B64(), "username": username, "name": "Ada", "surname": "Lovelace",
		"email": username + "@example.com", "role": role, "enabled": enabled,
	})
	require.Equal(f.t, http.StatusCreated, r.Status, string(r.Body))
	id, _ := r.Map(f.t)["uuid"].(string)
	require.NotEmpty(f.t, id)
	return id
}

// checkEnvelope asserts a family's error envelope.
func checkEnvelope(t *testing.T, family string, r *apitest.Response) {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), "%s body: %s", family, r.Body)
	switch family {
	case "native":
		assert.Contains(t, []string{"Unauthorized", "Forbidden"}, m["code"])
		assert.NotEmpty(t, m["message"])
	case "czertainly":
		assert.NotEmpty(t, m["message"])
		assert.Len(t, m, 1, "CZERTAINLY errors are {\"message\"} only")
	case "pca", "apig":
		assert.NotEmpty(t, m["error_code"])
		assert.NotEmpty(t, m["error_msg"])
	case "oauth":
		assert.NotEmpty(t, m["error"])
	case "acme":
		assert.NotEmpty(t, m["type"])
	default:
		t.Errorf("unknown family %q", family)
	}
}

// fillPath turns a route template into a concrete path: the tenant for
// project_id (APIG checks it against the token), a uuid elsewhere.
func fillPath(path, tenant string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		switch {
		case p == ":project_id":
			parts[i] = tenant
		case strings.HasPrefix(p, ":"), strings.HasPrefix(p, "*"):
			parts[i] = "5b6f2c1e-3a4d-4e8f-9a0b-1c2d3e4f5a6b"
		}
	}
	return strings.Join(parts, "/")
}

// TestAccessTableCoversEveryRoute: the access table and gin's route list
// match one to one, and every entry names known roles.
func TestAccessTableCoversEveryRoute(t *testing.T) {
	env := apitest.New(t, "bolt")
	o := api.Options{Engine: env.Engine}
	var table, registered []string
	for _, ri := range api.Routes(o) {
		key := ri.Method + " " + ri.Path
		table = append(table, key)
		a := ri.Access
		assert.True(t, a.Public || a.Loopback || len(a.TenantRoles)+len(a.PlatformRoles) > 0, "%s has no rule", key)
		for _, r := range a.TenantRoles {
			assert.Contains(t, signer.TenantRoles, r, "%s: unknown tenant role", key)
		}
		for _, r := range a.PlatformRoles {
			assert.Contains(t, signer.PlatformRoles, r, "%s: unknown platform role", key)
		}
		assert.Contains(t, []string{"native", "pca", "apig", "czertainly", "oauth", "acme"}, ri.Family, key)
	}
	for _, r := range api.Router(o).Routes() {
		registered = append(registered, r.Method+" "+r.Path)
	}
	assert.ElementsMatch(t, table, registered, "every gin route has exactly one access entry")
	for _, want := range []string{"GET /v1/admins", "POST /v1/local/admins", "POST /v1/tokens", "DELETE /v1/tokens/:id"} {
		assert.Contains(t, table, want)
	}
}

type principal struct {
	name   string
	token  string
	cert   *testpki.Cert
	tenant bool
	role   string
}

// TestRouteAccessMatrix walks the access table: for every route, no
// credential is 401, every principal whose role the rule lacks is 403,
// and every one it names gets past the guard; all in the family's
// envelope. It covers routes added later without change.
func TestRouteAccessMatrix(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newFixture(t, backend)
			var ps []principal
			for _, r := range signer.TenantRoles {
				ps = append(ps, principal{name: "token/" + r, token: f.env.NewToken("t1", r), tenant: true, role: r})
			}
			ps = append(ps,
				principal{name: "cert/superAdministrator", cert: f.super, role: signer.RoleSuperAdministrator},
				principal{name: "cert/administrator", cert: f.admin, role: signer.RoleAdministrator})

			for _, ri := range api.Routes(api.Options{Engine: f.env.Engine}) {
				key := ri.Method + " " + ri.Path
				a := ri.Access
				if a.Loopback && len(a.TenantRoles)+len(a.PlatformRoles) == 0 {
					continue // TestLocalAdminsIsLoopbackOnly
				}
				path := fillPath(ri.Path, "t1")
				r := f.env.Do(ri.Method, path, "", nil)
				if a.Public {
					assert.NotContains(t, []int{401, 403}, r.Status, "%s is public", key)
					continue
				}
				if assert.Equal(t, http.StatusUnauthorized, r.Status, "%s without credential: %s", key, r.Body) {
					checkEnvelope(t, ri.Family, r)
				}
				r = f.env.Do(ri.Method, path, "hsmca_forged-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", nil)
				assert.Equal(t, http.StatusUnauthorized, r.Status, "%s with a forged token", key)
				for _, p := range ps {
					var headers []string
					if p.cert != nil {
						headers = as(p.cert)
					}
					r := f.env.Do(ri.Method, path, p.token, nil, headers...)
					allowed := (p.tenant && slices.Contains(a.TenantRoles, p.role)) || (!p.tenant && slices.Contains(a.PlatformRoles, p.role))
					if allowed {
						assert.NotContains(t, []int{401, 403}, r.Status, "%s as %s must pass the guard: %s", key, p.name, r.Body)
						continue
					}
					if assert.Equal(t, http.StatusForbidden, r.Status, "%s as %s: %s", key, p.name, r.Body) {
						checkEnvelope(t, ri.Family, r)
					}
				}
			}
		})
	}
}

// TestIdentityRoutesSucceed calls each identity route with the role that
// may call it and checks the success status. The identity routes hold no
// tenant resources: tokens and admins are platform objects, which no
// tenant token reaches (403 above); a tenant's events are its own.
func TestIdentityRoutesSucceed(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newFixture(t, backend)
			victim := f.ca.Issue(t, testpki.Options{CommonName: "victim"})
			victimID := f.createAdmin(victim, "victim", signer.RoleAdministrator, false)

			steps := []struct {
				route  string
				as     *testpki.Cert
				path   string
				body   any
				status int
			}{
				{"GET /v1/admins", f.admin, "/v1/admins", nil, 200},
				{"GET /v1/admins/:uuid", f.admin, "/v1/admins/" + victimID, nil, 200},
				{"POST /v1/admins/:uuid", f.super, "/v1/admins/" + victimID, map[string]any{"name": "Vic"}, 200},
				{"PUT /v1/admins/:uuid/enable", f.super, "/v1/admins/" + victimID + "/enable", nil, 204},
				{"PUT /v1/admins/:uuid/disable", f.super, "/v1/admins/" + victimID + "/disable", nil, 204},
				{"PUT /v1/admins/enable", f.super, "/v1/admins/enable", []string{victimID}, 204},
				{"PUT /v1/admins/disable", f.super, "/v1/admins/disable", []string{victimID}, 204},
				{"DELETE /v1/admins/:uuid", f.super, "/v1/admins/" + victimID, nil, 204},
				{"GET /v1/tokens", f.admin, "/v1/tokens", nil, 200},
				{"POST /v1/tokens", f.super, "/v1/tokens", map[string]any{"tenant": "t1", "roles": []string{"auditor"}}, 201},
			}
			for _, s := range steps {
				r := f.doAs(s.as, strings.Fields(s.route)[0], s.path, s.body)
				assert.Equal(t, s.status, r.Status, "%s: %s", s.route, r.Body)
			}
			// Create, bulk delete and token delete need fresh objects.
			other := f.ca.Issue(t, testpki.Options{})
			id := f.createAdmin(other, "other", signer.RoleAdministrator, true) // POST /v1/admins: 201
			r := f.doAs(f.super, "DELETE", "/v1/admins", []string{id})
			assert.Equal(t, 204, r.Status, string(r.Body))
			r = f.doAs(f.super, "POST", "/v1/tokens", map[string]any{"tenant": "t1", "roles": []string{"signer"}})
			require.Equal(t, 201, r.Status)
			r = f.doAs(f.super, "DELETE", "/v1/tokens/"+r.Map(t)["id"].(string), nil)
			assert.Equal(t, 204, r.Status, string(r.Body))

			// Events: a tenant sees its own and nothing of another's.
			f.env.NewToken("t2", "signer")
			t1 := f.env.NewToken("t1", "auditor")
			r = f.env.Do("GET", "/v1/events", t1, nil)
			require.Equal(t, 200, r.Status)
			var page struct {
				Data []signer.StoredEvent `json:"data"`
			}
			r.JSON(t, &page)
			require.NotEmpty(t, page.Data)
			for _, ev := range page.Data {
				assert.Equal(t, "t1", ev.Tenant)
			}
		})
	}
}

func TestLocalAdminsIsLoopbackOnly(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend) // trusted-proxy mode off
			ca := testpki.NewCA(t, "CA")
			first := ca.Issue(t, testpki.Options{CommonName: "first"})
			body := map[string]any{"adminCertificate": first.B64(), "username": "first", "name": "F", "surname": "S",
				"email": "first@example.com", "role": "superAdministrator"}
			raw, _ := json.Marshal(body)

			// Not from loopback: refused before anything else.
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			h := api.Router(api.Options{Engine: env.Engine, Logger: quiet})
			req := httptest.NewRequest("POST", "/v1/local/admins", strings.NewReader(string(raw)))
			req.RemoteAddr = "192.0.2.10:40000"
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, http.StatusForbidden, rec.Code)
			assert.JSONEq(t, `{"message":"this route answers only to direct requests on the loopback interface"}`, rec.Body.String())

			// Relayed by a local proxy: refused too.
			r := env.Do("POST", "/v1/local/admins", "", body, "X-Forwarded-For", "198.51.100.1")
			assert.Equal(t, http.StatusForbidden, r.Status)

			wrongRole := map[string]any{}
			for k, v := range body {
				wrongRole[k] = v
			}
			wrongRole["role"] = "administrator"
			r = env.Do("POST", "/v1/local/admins", "", wrongRole)
			assert.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))

			r = env.Do("POST", "/v1/local/admins", "", body)
			require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
			id := r.Map(t)["uuid"].(string)
			assert.Equal(t, "/v1/admins/"+id, r.Header.Get("Location"))
			a, err := env.Admins.Get(context.Background(), id)
			require.NoError(t, err)
			assert.True(t, a.Enabled, "the first administrator is enabled")
			assert.Equal(t, signer.RoleSuperAdministrator, a.Role)

			second := ca.Issue(t, testpki.Options{})
			body["adminCertificate"], body["username"] = second.B64(), "second"
			r = env.Do("POST", "/v1/local/admins", "", body)
			assert.Equal(t, http.StatusConflict, r.Status, string(r.Body))
			assert.Contains(t, r.Map(t)["message"], "already exists")

			// In trusted-proxy mode every request may be the proxy's.
			px := api.Router(api.Options{Engine: env.Engine, Logger: quiet, TrustedProxy: true})
			req = httptest.NewRequest("POST", "/v1/local/admins", strings.NewReader(string(raw)))
			req.RemoteAddr = "127.0.0.1:40000"
			rec = httptest.NewRecorder()
			px.ServeHTTP(rec, req)
			assert.Equal(t, http.StatusForbidden, rec.Code)
		})
	}
}

func TestTokensAPI(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newFixture(t, backend)
			exp := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
			r := f.doAs(f.super, "POST", "/v1/tokens", map[string]any{"tenant": "acme", "roles": []string{"auditor", "signer"}, "expires_at": exp})
			require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
			assert.Equal(t, "no-store", r.Header.Get("Cache-Control"))
			m := r.Map(t)
			secret := m["token"].(string)
			id := m["id"].(string)
			assert.True(t, strings.HasPrefix(secret, "hsmca_"))
			assert.GreaterOrEqual(t, len(secret)-len("hsmca_"), 43, "at least 256 bits of base64url")
			assert.Equal(t, "acme", m["tenant"])
			assert.Equal(t, []any{"auditor", "signer"}, m["roles"])
			assert.Equal(t, exp.Format(time.RFC3339), m["expires_at"])
			assert.NotEmpty(t, m["created"])
			assert.Equal(t, "/v1/tokens/"+id, r.Header.Get("Location"))

			r = f.env.Do("GET", "/v1/events", "", nil, "X-Auth-Token", secret)
			assert.Equal(t, 200, r.Status, "X-Auth-Token works too")

			// Validation in the native envelope.
			for name, body := range map[string]any{
				"unknown role":  map[string]any{"tenant": "acme", "roles": []string{"root"}},
				"platform role": map[string]any{"tenant": "acme", "roles": []string{"superAdministrator"}},
				"no role":       map[string]any{"tenant": "acme", "roles": []string{}},
				"bad tenant":    map[string]any{"tenant": "_platform", "roles": []string{"signer"}},
				"past expiry":   map[string]any{"tenant": "acme", "roles": []string{"signer"}, "expires_at": "2001-01-01T00:00:00Z"},
				"bad expiry":    map[string]any{"tenant": "acme", "roles": []string{"signer"}, "expires_at": "tomorrow"},
				"unknown field": map[string]any{"tenant": "acme", "roles": []string{"signer"}, "scope": "all"},
				"not json":      "{",
			} {
				r := f.doAs(f.super, "POST", "/v1/tokens", body)
				assert.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", name, r.Body)
				assert.Equal(t, "BadRequest", r.Map(t)["code"], name)
			}

			// Listing: metadata only, filterable by tenant; last use shows up.
			f.env.NewToken("other", "signer")
			require.Eventually(t, func() bool {
				r := f.doAs(f.admin, "GET", "/v1/tokens?tenant=acme", nil)
				var page struct {
					Data []map[string]any `json:"data"`
				}
				r.JSON(t, &page)
				return len(page.Data) == 1 && page.Data[0]["last_used"] != nil
			}, 5*time.Second, 50*time.Millisecond, "last_used is recorded")
			r = f.doAs(f.admin, "GET", "/v1/tokens", nil)
			require.Equal(t, 200, r.Status)
			var page struct {
				Data []map[string]any `json:"data"`
			}
			r.JSON(t, &page)
			require.Len(t, page.Data, 2)
			for _, tok := range page.Data {
				for _, k := range []string{"id", "tenant", "roles", "created", "expires_at", "last_used"} {
					assert.Contains(t, tok, k)
				}
				assert.NotContains(t, tok, "token")
				assert.NotContains(t, tok, "hash")
			}
			assert.NotContains(t, string(r.Body), secret)
			r = f.doAs(f.admin, "GET", "/v1/tokens?tenant=_x", nil)
			assert.Equal(t, 400, r.Status)

			// administrator reads, only superAdministrator writes.
			r = f.doAs(f.admin, "POST", "/v1/tokens", map[string]any{"tenant": "acme", "roles": []string{"signer"}})
			assert.Equal(t, 403, r.Status)
			r = f.doAs(f.admin, "DELETE", "/v1/tokens/"+id, nil)
			assert.Equal(t, 403, r.Status)

			// Revocation is immediate, here and on a second replica.
			var replica *apitest.Env
			if backend == "redis" {
				replica = apitest.New(t, backend, apitest.Options{Token: f.env.Token, Redis: f.env.Redis})
				assert.Equal(t, 200, replica.Do("GET", "/v1/events", secret, nil).Status)
			}
			r = f.doAs(f.super, "DELETE", "/v1/tokens/"+id, nil)
			assert.Equal(t, 204, r.Status, string(r.Body))
			r = f.env.Do("GET", "/v1/events", secret, nil)
			assert.Equal(t, 401, r.Status)
			if replica != nil {
				assert.Equal(t, 401, replica.Do("GET", "/v1/events", secret, nil).Status, "revoked on every replica")
			}
			r = f.doAs(f.super, "DELETE", "/v1/tokens/"+id, nil)
			assert.Equal(t, 404, r.Status)
			assert.Equal(t, "NotFound", r.Map(t)["code"])
			assert.Equal(t, 200, f.env.Do("GET", "/v1/tokens", "", nil, as(f.super)...).Status)
		})
	}
}

func TestTokenExpiry(t *testing.T) {
	f := newFixture(t, "bolt")
	exp := time.Now().Add(3 * time.Second).UTC().Truncate(time.Second)
	r := f.doAs(f.super, "POST", "/v1/tokens", map[string]any{"tenant": "acme", "roles": []string{"auditor"}, "expires_at": exp})
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	secret := r.Map(t)["token"].(string)
	assert.Equal(t, 200, f.env.Do("GET", "/v1/events", secret, nil).Status)
	time.Sleep(time.Until(exp) + 200*time.Millisecond)
	r = f.env.Do("GET", "/v1/events", secret, nil)
	assert.Equal(t, 401, r.Status)
	assert.Equal(t, "Unauthorized", r.Map(t)["code"])
}

// TestCredentialChoice: with a token and a certificate, platform-only
// routes use the certificate and tenant routes the token.
func TestCredentialChoice(t *testing.T) {
	f := newFixture(t, "bolt")
	tok := f.env.NewToken("t1", "auditor")
	r := f.env.Do("GET", "/v1/admins", tok, nil, as(f.admin)...)
	assert.Equal(t, 200, r.Status, "platform route: the certificate counts")
	r = f.env.Do("GET", "/v1/events", tok, nil, as(f.admin)...)
	assert.Equal(t, 200, r.Status, "tenant route: the token counts")
	r = f.env.Do("GET", "/v1/admins", tok, nil)
	assert.Equal(t, 403, r.Status, "a token alone is a tenant principal")
	r = f.env.Do("GET", "/v1/events", "", nil, as(f.admin)...)
	assert.Equal(t, 403, r.Status, "a certificate alone is a platform principal")
	r = f.env.Do("GET", "/v1/admins", tok, nil, certHeader, "garbage")
	assert.Equal(t, 401, r.Status, "the chosen credential must be valid")
	r = f.env.Do("GET", "/v1/events", tok, nil, certHeader, "garbage")
	assert.Equal(t, 200, r.Status, "the credential not chosen is ignored")
}

// TestTokenSecretNeverLeaks: after its creation response, a token's
// secret is in no log line, no stored record, no event and no response.
func TestTokenSecretNeverLeaks(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newFixture(t, backend)
			r := f.doAs(f.super, "POST", "/v1/tokens", map[string]any{"tenant": "acme", "roles": []string{"admin", "auditor"}})
			require.Equal(t, http.StatusCreated, r.Status)
			secret := r.Map(t)["token"].(string)
			cliSecret := f.env.NewToken("acme", "signer") // the ops path
			needles := map[string]string{"secret": secret, "random part": strings.TrimPrefix(secret, "hsmca_"),
				"ops secret": cliSecret, "ops random part": strings.TrimPrefix(cliSecret, "hsmca_")}

			var later []*apitest.Response
			do := func(method, path, token string, body any, headers ...string) {
				later = append(later, f.env.Do(method, path, token, body, headers...))
			}
			for range 3 {
				do("GET", "/v1/events", secret, nil)
				do("GET", "/v1/events", "", nil, "X-Auth-Token", cliSecret)
			}
			do("GET", "/v1/admins", secret, nil)                                          // 403
			do("GET", "/v1/events?limit=x", secret, nil)                                  // 400
			do("GET", "/v1/no-such-route", secret, nil)                                   // 404
			do("GET", "/v1/events", secret+"x", nil)                                      // 401
			do("POST", "/v1/tokens", "", map[string]any{"token": secret}, as(f.super)...) // 400, echoes nothing
			require.Eventually(t, func() bool {
				r := f.env.Do("GET", "/v1/tokens", "", nil, as(f.admin)...)
				later = append(later, r)
				return strings.Count(string(r.Body), `"last_used":"`) == 2
			}, 5*time.Second, 50*time.Millisecond)
			do("GET", "/v1/tokens?tenant=acme", "", nil, as(f.super)...)
			do("GET", "/v1/admins", "", nil, as(f.super)...)
			do("GET", "/metrics", "", nil)
			// While the tokens live, and again once they are revoked.
			checkStore(t, f.env, needles)
			list := f.env.Do("GET", "/v1/tokens", "", nil, as(f.super)...)
			var page struct {
				Data []struct {
					ID string `json:"id"`
				} `json:"data"`
			}
			later = append(later, list)
			list.JSON(t, &page)
			require.Len(t, page.Data, 2)
			for _, tok := range page.Data {
				do("DELETE", "/v1/tokens/"+tok.ID, "", nil, as(f.super)...)
			}
			do("GET", "/v1/events", secret, nil) // 401 after revocation
			checkStore(t, f.env, needles)

			for _, r := range later {
				hdr, _ := json.Marshal(r.Header)
				for what, n := range needles {
					assert.NotContains(t, string(r.Body), n, "%s in a response body", what)
					assert.NotContains(t, string(hdr), n, "%s in a response header", what)
				}
			}
			for what, n := range needles {
				assert.NotContains(t, f.env.Logs.String(), n, "%s in the logs", what)
			}
			assert.NotEmpty(t, f.env.Logs.String(), "the logs were captured")
		})
	}
}

// checkStore looks for the needles in every record and event, through the
// store's own API and in the raw bytes of the backend.
func checkStore(t *testing.T, env *apitest.Env, needles map[string]string) {
	t.Helper()
	ctx := context.Background()
	var dump strings.Builder
	for _, kind := range []string{"apitoken", "admin", "adminroster"} {
		p, err := env.Store.List(ctx, store.Query{Kind: kind, Tenant: store.PlatformTenant})
		require.NoError(t, err)
		for _, rec := range p.Records {
			b, _ := json.Marshal(rec)
			dump.Write(b)
		}
	}
	tenants, err := env.Store.EventTenants(ctx)
	require.NoError(t, err)
	require.Contains(t, tenants, "acme")
	for _, tn := range tenants {
		evs, err := env.Store.ListEvents(ctx, tn, 0, 0)
		require.NoError(t, err)
		for _, ev := range evs {
			dump.Write(ev.Data)
		}
	}
	require.Contains(t, dump.String(), "API_TOKEN_CREATE")
	raw := rawStoreBytes(t, env)
	require.NotEmpty(t, raw)
	for what, n := range needles {
		assert.NotContains(t, dump.String(), n, "%s in a stored record or event", what)
		assert.NotContains(t, raw, n, "%s in the store's raw data", what)
	}
}

// rawStoreBytes returns everything the backend holds: the bolt file, or
// every redis key and value.
func rawStoreBytes(t *testing.T, env *apitest.Env) string {
	t.Helper()
	if p, ok := env.Store.(interface{ Path() string }); ok {
		b, err := os.ReadFile(p.Path())
		require.NoError(t, err)
		return string(b)
	}
	require.NotNil(t, env.Redis)
	u, err := url.Parse(env.Redis.URL())
	require.NoError(t, err)
	rc := redis.NewClient(&redis.Options{Addr: u.Host})
	defer rc.Close()
	ctx := context.Background()
	var sb strings.Builder
	iter := rc.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		sb.WriteString(k + "\n")
		typ, err := rc.Type(ctx, k).Result()
		require.NoError(t, err)
		var v any
		switch typ {
		case "string":
			v, err = rc.Get(ctx, k).Result()
		case "hash":
			v, err = rc.HGetAll(ctx, k).Result()
		case "list":
			v, err = rc.LRange(ctx, k, 0, -1).Result()
		case "set":
			v, err = rc.SMembers(ctx, k).Result()
		case "zset":
			v, err = rc.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "stream":
			v, err = rc.XRange(ctx, k, "-", "+").Result()
		default:
			t.Fatalf("redis key %s of unexpected type %s", k, typ)
		}
		require.NoError(t, err)
		b, _ := json.Marshal(v)
		sb.Write(b)
		sb.WriteString("\n")
	}
	require.NoError(t, iter.Err())
	return sb.String()
}
