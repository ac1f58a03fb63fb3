package api

import (
	"context"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/keys"
)

// KeysAPI is what the handlers of hsmca's own keys API call (signer/keys).
type KeysAPI interface {
	Create(ctx context.Context, tenant, algorithm, label string) (*keys.Key, error)
	List(ctx context.Context, tenant string, limit int, cursor string) (*keys.Page, error)
	Get(ctx context.Context, tenant, id string) (*keys.Key, error)
	SetEnabled(ctx context.Context, tenant, id string, enabled bool) (*keys.Key, error)
	Delete(ctx context.Context, tenant, id string) error
	Sign(ctx context.Context, tenant, id string, in keys.SignInput) (*keys.Signature, error)
	Verify(ctx context.Context, tenant, id string, in keys.SignInput) (valid bool, algorithm string, err error)
}

// mountKeys mounts hsmca's own keys API (family 5). admin manages keys;
// signer uses them; auditor may read them (public material only). Its
// errors are in the native envelope by kind alone: the keys API's reasons
// (quota, a key another family owns, a disabled key) are all 409.
func (s *server) mountKeys() {
	manage := Access{TenantRoles: []string{signer.RoleAdmin}}
	use := Access{TenantRoles: []string{signer.RoleAdmin, signer.RoleSigner}}
	read := Access{TenantRoles: []string{signer.RoleAdmin, signer.RoleSigner, signer.RoleAuditor}}
	// Signing and verifying read the key and use the HSM's signature:
	// they may run beside their token's check (overlap.go), which their
	// event record may carry (their only write).
	useBeside := use
	useBeside.Overlap, useBeside.Carry = true, true
	s.handle(native, "POST", "/v1/keys", manage, s.createKey)
	s.handle(native, "GET", "/v1/keys", read, s.listKeys)
	s.handle(native, "GET", "/v1/keys/:id", read, s.getKey)
	s.handle(native, "POST", "/v1/keys/:id/sign", useBeside, s.signWithKey)
	s.handle(native, "POST", "/v1/keys/:id/verify", useBeside, s.verifyWithKey)
	s.handle(native, "POST", "/v1/keys/:id/disable", manage, s.setKeyState(false))
	s.handle(native, "POST", "/v1/keys/:id/enable", manage, s.setKeyState(true))
	s.handle(native, "DELETE", "/v1/keys/:id", manage, s.deleteKey)
}

type keyCreateRequest struct {
	Algorithm string `json:"algorithm"`
	Label     string `json:"label"`
}

type keyView struct {
	ID                string         `json:"id"`
	Label             string         `json:"label,omitempty"`
	Algorithm         string         `json:"algorithm"`
	State             string         `json:"state"`
	Owner             string         `json:"owner"`
	Created           time.Time      `json:"created"`
	PublicKeyPEM      string         `json:"publicKeyPem"`
	PublicKeyJWK      map[string]any `json:"publicKeyJwk"`
	SigningAlgorithms []string       `json:"signingAlgorithms"`
}

func viewKey(k *keys.Key) keyView {
	return keyView{ID: k.ID, Label: k.Label, Algorithm: k.Algorithm, State: k.State, Owner: k.Owner,
		Created: k.Created, PublicKeyPEM: k.PublicKeyPEM, PublicKeyJWK: k.PublicKeyJWK,
		SigningAlgorithms: k.SigningAlgorithms}
}

// signRequest is the body of sign and verify. Pointers tell an absent
// field from an empty one.
type signRequest struct {
	Algorithm string  `json:"algorithm"`
	Digest    *string `json:"digest"`
	Message   *string `json:"message"`
	Format    string  `json:"format"`
	Signature *string `json:"signature"`
}

func (r *signRequest) input() keys.SignInput {
	return keys.SignInput{Algorithm: r.Algorithm, Digest: r.Digest, Message: r.Message,
		Format: r.Format, Signature: r.Signature}
}

func (s *server) createKey(c *gin.Context) {
	var req keyCreateRequest
	if err := decodeBody(c, &req, true); err != nil {
		nativeBodyError(c, err)
		return
	}
	if req.Algorithm == "" {
		nativeError(c, signer.Invalid("algorithm", nil, "is required"))
		return
	}
	k, err := s.opts.Keys.Create(c.Request.Context(), callerTenant(c), req.Algorithm, req.Label)
	if err != nil {
		nativeError(c, err)
		return
	}
	c.Header("Location", "/v1/keys/"+k.ID)
	c.JSON(http.StatusCreated, viewKey(k))
}

func (s *server) listKeys(c *gin.Context) {
	limit, ok := queryInt(c, native, "limit", 0, 1, 1000, "must be an integer from 1 to 1000")
	if !ok {
		return
	}
	cursor, ok := queryParam(c, native, cursorParam)
	if !ok {
		return
	}
	page, err := s.opts.Keys.List(c.Request.Context(), callerTenant(c), limit, cursor)
	if err != nil {
		nativeError(c, err)
		return
	}
	out := make([]keyView, 0, len(page.Keys))
	for i := range page.Keys {
		out = append(out, viewKey(&page.Keys[i]))
	}
	body := gin.H{"data": out}
	if page.NextCursor != "" {
		body["nextCursor"] = page.NextCursor
	}
	c.JSON(http.StatusOK, body)
}

func (s *server) getKey(c *gin.Context) {
	k, err := s.opts.Keys.Get(c.Request.Context(), callerTenant(c), c.Param("id"))
	if err != nil {
		nativeError(c, err)
		return
	}
	c.JSON(http.StatusOK, viewKey(k))
}

func (s *server) signWithKey(c *gin.Context) {
	var req signRequest
	if err := decodeSignBody(c, &req); err != nil {
		nativeBodyError(c, err)
		return
	}
	if req.Signature != nil {
		nativeError(c, signer.Invalid("signature", nil, "is for verify, not sign"))
		return
	}
	sig, err := s.opts.Keys.Sign(c.Request.Context(), callerTenant(c), c.Param("id"), req.input())
	if err != nil {
		nativeError(c, err)
		return
	}
	writeSignResponse(c, &signResponse{KeyID: sig.KeyID, Algorithm: sig.Algorithm, Format: sig.Format,
		Signature: base64.StdEncoding.EncodeToString(sig.Value)})
}

// signResponse is the answer of a signature, its fields in the order a
// map of them was written before (sorted); writeSignResponse writes it.
type signResponse struct {
	Algorithm string `json:"algorithm"`
	Format    string `json:"format,omitempty"`
	KeyID     string `json:"keyId"`
	Signature string `json:"signature"`
}

func (s *server) verifyWithKey(c *gin.Context) {
	var req signRequest
	if err := decodeSignBody(c, &req); err != nil {
		nativeBodyError(c, err)
		return
	}
	id := c.Param("id")
	ok, alg, err := s.opts.Keys.Verify(c.Request.Context(), callerTenant(c), id, req.input())
	if err != nil {
		nativeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"keyId": id, "algorithm": alg, "valid": ok})
}

func (s *server) setKeyState(enabled bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		k, err := s.opts.Keys.SetEnabled(c.Request.Context(), callerTenant(c), c.Param("id"), enabled)
		if err != nil {
			nativeError(c, err)
			return
		}
		c.JSON(http.StatusOK, viewKey(k))
	}
}

func (s *server) deleteKey(c *gin.Context) {
	if err := s.opts.Keys.Delete(c.Request.Context(), callerTenant(c), c.Param("id")); err != nil {
		nativeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// callerTenant is the tenant of the authenticated token; the routes of
// this file admit tenant roles only, so it is never empty.
func callerTenant(c *gin.Context) string {
	return signer.CallerFrom(c.Request.Context()).Tenant
}
