package api_test

import (
	"net/http"
	"testing"

	apigmodel "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/apig/v2/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
)

// TestAccessKeyAdministration: a superAdministrator creates access keys
// (the secret key shown once), an administrator lists them without
// secrets, and a revoked key stops working at once.
func TestAccessKeyAdministration(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newFixture(t, backend)
			body := map[string]any{"tenant": "acme", "roles": []string{"ca-operator"}}

			r := f.doAs(f.admin, "POST", "/v1/access-keys", body)
			assert.Equal(t, http.StatusForbidden, r.Status, "administrators read, superAdministrators write")
			tok := f.env.NewToken("acme", signer.RoleAdmin)
			r = f.env.Do("POST", "/v1/access-keys", tok, body)
			assert.Equal(t, http.StatusForbidden, r.Status, "a tenant token manages no credentials")

			r = f.doAs(f.super, "POST", "/v1/access-keys", map[string]any{"tenant": "acme", "roles": []string{"root"}})
			assert.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))

			r = f.doAs(f.super, "POST", "/v1/access-keys", body)
			require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
			assert.Equal(t, "no-store", r.Header.Get("Cache-Control"))
			created := r.Map(t)
			ak, sk := created["access_key"].(string), created["secret_key"].(string)
			assert.Len(t, ak, 20)
			assert.Len(t, sk, 40)
			assert.Equal(t, "/v1/access-keys/"+ak, r.Header.Get("Location"))

			c := apigClient(t, f.env.Server.URL, ak, sk, "acme")
			_, err := c.ListCertificatesV2(&apigmodel.ListCertificatesV2Request{})
			require.NoError(t, err)

			r = f.doAs(f.admin, "GET", "/v1/access-keys?tenant=acme", nil)
			require.Equal(t, http.StatusOK, r.Status)
			assert.NotContains(t, string(r.Body), sk)
			var page struct {
				Data []map[string]any `json:"data"`
			}
			r.JSON(t, &page)
			require.Len(t, page.Data, 1)
			assert.Equal(t, ak, page.Data[0]["access_key"])
			assert.Equal(t, []any{"ca-operator"}, page.Data[0]["roles"])
			assert.NotContains(t, page.Data[0], "secret_key")

			r = f.doAs(f.super, "DELETE", "/v1/access-keys/"+ak, nil)
			assert.Equal(t, http.StatusNoContent, r.Status)
			status, _ := sdkStatus(t, func() error { _, err := c.ListCertificatesV2(&apigmodel.ListCertificatesV2Request{}); return err }())
			assert.Equal(t, http.StatusUnauthorized, status)
			r = f.doAs(f.super, "DELETE", "/v1/access-keys/"+ak, nil)
			assert.Equal(t, http.StatusNotFound, r.Status)

			evs := f.env.Do("GET", "/v1/events", tok, nil)
			assert.Contains(t, string(evs.Body), "ACCESS_KEY_CREATE")
			assert.Contains(t, string(evs.Body), "ACCESS_KEY_DELETE")

			assert.NotContains(t, f.env.Logs.String(), sk)
			require.NoError(t, f.env.Engine.Close())
			assert.NotContains(t, rawStoreBytes(t, f.env), sk)
		})
	}
}
