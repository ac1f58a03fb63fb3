package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

// tokenCreateRequest is the body of POST /v1/tokens.
type tokenCreateRequest struct {
	Tenant    string     `json:"tenant"`
	Roles     []string   `json:"roles"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// tokenView is a token as listed: never the secret, never its hash.
type tokenView struct {
	ID        string     `json:"id"`
	Tenant    string     `json:"tenant"`
	Roles     []string   `json:"roles"`
	Created   time.Time  `json:"created"`
	ExpiresAt *time.Time `json:"expires_at"`
	LastUsed  *time.Time `json:"last_used"`
	CreatedBy string     `json:"created_by,omitempty"`
	// Client names the OAuth client an access token was minted for.
	Client string `json:"client,omitempty"`
}

// tokenCreated adds the secret, shown this once.
type tokenCreated struct {
	tokenView
	Token string `json:"token"`
}

func viewToken(t *signer.Token) tokenView {
	v := tokenView{ID: t.ID, Tenant: t.Tenant, Roles: t.Roles, Created: t.Created.UTC(),
		ExpiresAt: t.ExpiresAt, LastUsed: t.LastUsed, CreatedBy: t.CreatedBy, Client: t.Client}
	if v.Roles == nil {
		v.Roles = []string{}
	}
	return v
}

// nativeBodyError turns a JSON decoding failure into the native envelope,
// naming the field when the decoder knows it.
func nativeBodyError(c *gin.Context, err error) {
	var (
		mbe *http.MaxBytesError
		ute *json.UnmarshalTypeError
		pe  *time.ParseError
	)
	switch {
	case errors.As(err, &mbe):
		c.AbortWithStatusJSON(http.StatusRequestEntityTooLarge, nativeEnvelope{Code: "PayloadTooLarge", Message: "request body too large"})
	case errors.Is(err, io.EOF):
		nativeError(c, signer.E(signer.KindInvalid, "request body is required"))
	case errors.As(err, &ute):
		nativeError(c, signer.Invalid(ute.Field, nil, "must be "+ute.Type.String()))
	case errors.As(err, &pe):
		nativeError(c, signer.Invalid("expires_at", pe.Value, "must be an RFC 3339 time"))
	default:
		nativeError(c, signer.E(signer.KindInvalid, "malformed JSON body: %v", err))
	}
}

// credentialRequest reads the body of a token's or an access key's
// creation, the expiry cut to the second; on failure it has answered.
func credentialRequest(c *gin.Context) (tokenCreateRequest, bool) {
	var req tokenCreateRequest
	if err := decodeBody(c, &req, true); err != nil {
		nativeBodyError(c, err)
		return req, false
	}
	if req.ExpiresAt != nil {
		t := req.ExpiresAt.UTC().Truncate(time.Second)
		req.ExpiresAt = &t
	}
	return req, true
}

// createToken serves POST /v1/tokens. The answer is the only place the
// secret ever appears, so it must not be cached.
func (s *server) createToken(c *gin.Context) {
	req, ok := credentialRequest(c)
	if !ok {
		return
	}
	secret, tok, err := s.eng.CreateToken(c.Request.Context(), req.Tenant, req.Roles, req.ExpiresAt)
	if err != nil {
		nativeError(c, err)
		return
	}
	credentialCreated(c, "/v1/tokens/"+tok.ID, tokenCreated{tokenView: viewToken(tok), Token: secret})
}

// listCredentials serves a credential list (tokens, access keys, OAuth
// clients) for administrators: ?tenant=T narrows it, each item is shown by
// view, never with a secret.
func listCredentials[T, V any](c *gin.Context, list func(ctx context.Context, tenant string) ([]T, error), view func(*T) V) {
	tenant, ok := queryParam(c, native, param{"tenant", 64, wordChars})
	if !ok {
		return
	}
	if tenant != "" && !signer.ValidTenant(tenant) {
		nativeError(c, queryInvalid("tenant", tenant, "not a tenant name"))
		return
	}
	items, err := list(c.Request.Context(), tenant)
	if err != nil {
		nativeError(c, err)
		return
	}
	out := make([]V, 0, len(items))
	for i := range items {
		out = append(out, view(&items[i]))
	}
	c.JSON(http.StatusOK, gin.H{"data": out})
}

// revokeCredential serves a credential's DELETE by the path parameter
// name: it stops working at once on every replica.
func revokeCredential(c *gin.Context, name string, revoke func(ctx context.Context, id string) error) {
	if err := revoke(c.Request.Context(), c.Param(name)); err != nil {
		nativeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// credentialCreated answers a credential's creation: the only answer that
// carries its secret, so it must not be cached.
func credentialCreated(c *gin.Context, location string, body any) {
	c.Header("Cache-Control", "no-store")
	c.Header("Location", location)
	c.JSON(http.StatusCreated, body)
}
