package api

import (
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
	req, ok := credentialRequest(c)
	if !ok {
		return
	}
	secret, k, err := s.eng.CreateAccessKey(c.Request.Context(), req.Tenant, req.Roles, req.ExpiresAt)
	if err != nil {
		nativeError(c, err)
		return
	}
	credentialCreated(c, "/v1/access-keys/"+k.ID, accessKeyCreated{accessKeyView: viewAccessKey(k), SecretKey: secret})
}
