package api_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
)

// mattrAudience is the audience MATTR VII clients send; hsmca accepts
// and ignores it (its access tokens are good for this daemon only).
const mattrAudience = "https://vii.mattr.global"

// TestOAuthClientCredentialsWithTheStandardClient: golang.org/x/oauth2's
// client-credentials flow gets a token from hsmcad, in each way it can
// send the client's credentials, and the token is accepted by every
// family its roles reach.
func TestOAuthClientCredentialsWithTheStandardClient(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newFixture(t, backend)
			r := f.doAs(f.super, "POST", "/v1/oauth-clients", map[string]any{
				"tenant": "acme", "roles": []string{"dts-provider", "ca-operator", "signer"}, "name": "issuer service"})
			require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
			assert.Equal(t, "no-store", r.Header.Get("Cache-Control"))
			created := r.Map(t)
			id, secret := created["client_id"].(string), created["client_secret"].(string)

			for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInParams, oauth2.AuthStyleInHeader, oauth2.AuthStyleAutoDetect} {
				cfg := clientcredentials.Config{ClientID: id, ClientSecret: secret, AuthStyle: style,
					TokenURL: f.env.Server.URL + "/oauth/token", EndpointParams: url.Values{"audience": {mattrAudience}}}
				tok, err := cfg.Token(context.Background())
				require.NoError(t, err, "auth style %v", style)
				assert.Equal(t, "Bearer", tok.Type())
				assert.WithinDuration(t, time.Now().Add(time.Hour), tok.Expiry, 10*time.Second)

				hc := cfg.Client(context.Background())
				for _, path := range []string{"/v1/ecosystems/certificates/ca", "/v1/private-certificate-authorities", "/v1/keys"} {
					resp, err := hc.Get(f.env.Server.URL + path)
					require.NoError(t, err)
					resp.Body.Close()
					assert.Equal(t, http.StatusOK, resp.StatusCode, path)
				}
				resp, err := hc.Get(f.env.Server.URL + "/v1/events")
				require.NoError(t, err)
				resp.Body.Close()
				assert.Equal(t, http.StatusForbidden, resp.StatusCode, "the client's roles, not more")
			}

			// A bad secret: RFC 6749's invalid_client, 401.
			bad := clientcredentials.Config{ClientID: id, ClientSecret: secret + "x", TokenURL: f.env.Server.URL + "/oauth/token",
				AuthStyle: oauth2.AuthStyleInHeader}
			_, err := bad.Token(context.Background())
			var re *oauth2.RetrieveError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, http.StatusUnauthorized, re.Response.StatusCode)
			assert.Equal(t, "invalid_client", re.ErrorCode)
			assert.Contains(t, re.Response.Header.Get("WWW-Authenticate"), "Basic")

			// Revoking the client stops new tokens and ends the live ones.
			cfg := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: f.env.Server.URL + "/oauth/token"}
			live, err := cfg.Token(context.Background())
			require.NoError(t, err)
			r = f.doAs(f.admin, "GET", "/v1/oauth-clients?tenant=acme", nil)
			require.Equal(t, http.StatusOK, r.Status)
			assert.Contains(t, string(r.Body), id)
			assert.NotContains(t, string(r.Body), secret)
			r = f.doAs(f.super, "DELETE", "/v1/oauth-clients/"+id, nil)
			require.Equal(t, http.StatusNoContent, r.Status)
			_, err = cfg.Token(context.Background())
			require.ErrorAs(t, err, &re)
			assert.Equal(t, http.StatusUnauthorized, re.Response.StatusCode)
			res := f.env.Do("GET", "/v1/keys", live.AccessToken, nil)
			assert.Equal(t, http.StatusUnauthorized, res.Status, "access tokens of a revoked client end with it")

			assert.NotContains(t, f.env.Logs.String(), secret)
			assert.NotContains(t, f.env.Logs.String(), live.AccessToken)
			require.NoError(t, f.env.Engine.Close())
			raw := rawStoreBytes(t, f.env)
			assert.NotContains(t, raw, secret)
			assert.NotContains(t, raw, live.AccessToken)
		})
	}
}

// TestOAuthTokenRequestAsMATTRDocumentsIt: the JSON body of MATTR's
// documentation, and the RFC's errors for what is wrong.
func TestOAuthTokenRequestAsMATTRDocumentsIt(t *testing.T) {
	env := apitest.New(t, "bolt")
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	secret, cl, err := env.Engine.CreateOAuthClient(ctx, "acme", []string{signer.RoleDTSProvider}, "")
	require.NoError(t, err)

	r := env.Do("POST", "/oauth/token", "", map[string]string{"client_id": cl.ID, "client_secret": secret,
		"audience": mattrAudience, "grant_type": "client_credentials"})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	body := r.Map(t)
	assert.Equal(t, "Bearer", body["token_type"])
	assert.EqualValues(t, 3600, body["expires_in"])
	assert.Equal(t, "no-store", r.Header.Get("Cache-Control"))
	res := env.Do("GET", "/v1/ecosystems/certificates/ca", body["access_token"].(string), nil)
	assert.Equal(t, http.StatusOK, res.Status)

	for _, c := range []struct {
		body   any
		ct     string
		status int
		code   string
	}{
		{map[string]string{"client_id": cl.ID, "client_secret": secret, "grant_type": "password"}, "", 400, "unsupported_grant_type"},
		{map[string]string{"client_id": cl.ID, "client_secret": secret}, "", 400, "invalid_request"},
		{map[string]string{"client_id": cl.ID, "grant_type": "client_credentials"}, "", 401, "invalid_client"},
		{map[string]string{"client_id": "nobody", "client_secret": secret, "grant_type": "client_credentials"}, "", 401, "invalid_client"},
		{`[1,2]`, "", 400, "invalid_request"},
		{"grant_type=client_credentials&client_id=" + cl.ID + "&client_secret=" + url.QueryEscape(secret) + "&client_id=x",
			"application/x-www-form-urlencoded", 400, "invalid_request"},
		{"<xml/>", "text/xml", 415, "invalid_request"},
	} {
		var headers []string
		if c.ct != "" {
			headers = []string{"Content-Type", c.ct}
		}
		r := env.Do("POST", "/oauth/token", "", c.body, headers...)
		assert.Equal(t, c.status, r.Status, "%v: %s", c.body, r.Body)
		assert.Equal(t, c.code, r.Map(t)["error"], "%v", c.body)
		assert.NotContains(t, string(r.Body), secret)
	}
	r = env.Do("GET", "/oauth/token", "", nil)
	assert.Equal(t, http.StatusMethodNotAllowed, r.Status)
	assert.NotEmpty(t, r.Map(t)["error"], "the endpoint's own envelope")
	assert.False(t, strings.Contains(env.Logs.String(), secret))
}
