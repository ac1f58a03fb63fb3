package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

// accessKeyView is an access key as listed: never the secret key.
type accessKeyView struct {
	AccessKey string     `json:"access_key"`
	Tenant    string     `json:"tenant"`
	Roles     []string   `json:"roles"`
	Created   time.Time  `json:"created"`
	ExpiresAt *time.Time `json:"expires_at"`
	LastUsed  *time.Time `json:"last_used"`
	CreatedBy string     `json:"created_by,omitempty"`
}

// accessKeyCreated adds the secret key, shown this once.
type accessKeyCreated struct {
	accessKeyView
	SecretKey string `json:"secret_key"`
}

func viewAccessKey(k *signer.AccessKey) accessKeyView {
	v := accessKeyView{AccessKey: k.ID, Tenant: k.Tenant, Roles: k.Roles, Created: k.Created.UTC(),
		ExpiresAt: k.ExpiresAt, LastUsed: k.LastUsed, CreatedBy: k.CreatedBy}
	if v.Roles == nil {
		v.Roles = []string{}
	}
	return v
}

// createAccessKey serves POST /v1/access-keys (same body as a token's).
// The answer is the only place the secret key ever appears.
func (s *server) createAccessKey(c *gin.Context) {
	var req tokenCreateRequest
	if err := decodeBody(c, &req, true); err != nil {
		nativeBodyError(c, err)
		return
	}
	if req.ExpiresAt != nil {
		t := req.ExpiresAt.UTC().Truncate(time.Second)
		req.ExpiresAt = &t
	}
	secret, k, err := s.eng.CreateAccessKey(c.Request.Context(), req.Tenant, req.Roles, req.ExpiresAt)
	if err != nil {
		nativeError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Location", "/v1/access-keys/"+k.ID)
	c.JSON(http.StatusCreated, accessKeyCreated{accessKeyView: viewAccessKey(k), SecretKey: secret})
}

// listAccessKeys serves GET /v1/access-keys[?tenant=T].
func (s *server) listAccessKeys(c *gin.Context) {
	tenant, ok := queryParam(c, native, param{"tenant", 64, wordChars})
	if !ok {
		return
	}
	if tenant != "" && !signer.ValidTenant(tenant) {
		nativeError(c, queryInvalid("tenant", tenant, "not a tenant name"))
		return
	}
	keys, err := s.eng.ListAccessKeys(c.Request.Context(), tenant)
	if err != nil {
		nativeError(c, err)
		return
	}
	out := make([]accessKeyView, 0, len(keys))
	for i := range keys {
		out = append(out, viewAccessKey(&keys[i]))
	}
	c.JSON(http.StatusOK, gin.H{"data": out})
}

// revokeAccessKey serves DELETE /v1/access-keys/{access_key}: signatures
// made with it fail at once on every replica.
func (s *server) revokeAccessKey(c *gin.Context) {
	if err := s.eng.RevokeAccessKey(c.Request.Context(), c.Param("access_key")); err != nil {
		nativeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
