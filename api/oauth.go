package api

import (
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

// OAuth 2.0 client credentials grant (RFC 6749 §4.4), the way MATTR VII
// callers obtain their bearer tokens: POST /oauth/token with client_id,
// client_secret, audience and grant_type=client_credentials, as JSON or a
// form, or with the client authenticated by HTTP Basic. Errors are the
// RFC's own envelope, {"error", "error_description"}.

// oauth is the token endpoint's family: its envelope is RFC 6749 §5.2.
var oauth = Family{Name: "oauth", WriteErr: oauthError}

type oauthEnvelope struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// oauthError maps the engine's kinds to RFC 6749 error codes.
func oauthError(c *gin.Context, err error) {
	e := signer.AsError(err)
	status, code := http.StatusBadRequest, "invalid_request"
	switch e.Kind {
	case signer.KindUnauthenticated, signer.KindForbidden:
		status, code = http.StatusUnauthorized, "invalid_client"
		if _, _, basic := c.Request.BasicAuth(); basic {
			c.Header("WWW-Authenticate", `Basic realm="hsmca", charset="UTF-8"`)
		}
	case signer.KindUnavailable:
		status, code = http.StatusServiceUnavailable, "temporarily_unavailable"
	case signer.KindInternal:
		status, code = http.StatusInternalServerError, "server_error"
	}
	if e.Reason != "" {
		code = string(e.Reason)
	}
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(status, oauthEnvelope{Error: code, Description: e.Msg})
}

// oauthTokenRequest is the grant request, from a JSON or a form body.
type oauthTokenRequest struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Audience     string `json:"audience"`
	Scope        string `json:"scope"`
}

func oauthInvalid(reason, msg string) error {
	return &signer.Error{Kind: signer.KindInvalid, Reason: signer.Reason(reason), Msg: msg}
}

// readTokenRequest reads the body in either encoding and the client's
// credentials from the body or from HTTP Basic (not both).
func readTokenRequest(c *gin.Context) (oauthTokenRequest, error) {
	var req oauthTokenRequest
	mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if mt == "application/x-www-form-urlencoded" {
		if err := c.Request.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return req, errBodyTooLarge
			}
			return req, oauthInvalid("invalid_request", "malformed form body")
		}
		f := c.Request.PostForm
		for _, k := range []string{"grant_type", "client_id", "client_secret", "audience", "scope"} {
			if len(f[k]) > 1 {
				return req, oauthInvalid("invalid_request", k+" given more than once")
			}
		}
		req = oauthTokenRequest{GrantType: f.Get("grant_type"), ClientID: f.Get("client_id"),
			ClientSecret: f.Get("client_secret"), Audience: f.Get("audience"), Scope: f.Get("scope")}
	} else if err := decodeBody(c, &req, false); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, errBodyTooLarge
		}
		return req, oauthInvalid("invalid_request", "the body must be a JSON object or a form with grant_type, client_id and client_secret")
	}
	if user, pass, ok := c.Request.BasicAuth(); ok {
		if req.ClientSecret != "" {
			return req, oauthInvalid("invalid_request", "send the client's credentials once: in the Authorization header or in the body")
		}
		// RFC 6749 §2.3.1: both parts are form-encoded before Basic.
		id, err1 := url.QueryUnescape(user)
		secret, err2 := url.QueryUnescape(pass)
		if err1 != nil || err2 != nil || (req.ClientID != "" && req.ClientID != id) {
			return req, oauthInvalid("invalid_request", "malformed client credentials in the Authorization header")
		}
		req.ClientID, req.ClientSecret = id, secret
	}
	switch {
	case req.GrantType == "":
		return req, oauthInvalid("invalid_request", "grant_type is required")
	case req.GrantType != "client_credentials":
		return req, oauthInvalid("unsupported_grant_type", "only the client_credentials grant is served")
	case req.ClientID == "" || req.ClientSecret == "":
		return req, &signer.Error{Kind: signer.KindUnauthenticated, Msg: "client_id and client_secret are required"}
	}
	return req, nil
}

// oauthToken serves POST /oauth/token.
func (s *server) oauthToken(c *gin.Context) {
	req, err := readTokenRequest(c)
	if errors.Is(err, errBodyTooLarge) {
		writeStatus(c, oauth, http.StatusRequestEntityTooLarge, "invalid_request", "request body too large")
		return
	}
	if err != nil {
		oauthError(c, err)
		return
	}
	ttl := s.opts.AccessTokenTTL
	if ttl <= 0 {
		ttl = signer.DefaultAccessTokenTTL
	}
	secret, _, err := s.eng.IssueAccessToken(c.Request.Context(), req.ClientID, req.ClientSecret, ttl)
	if err != nil {
		oauthError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
	c.JSON(http.StatusOK, gin.H{
		"access_token": secret,
		"token_type":   "Bearer",
		"expires_in":   int64(ttl.Seconds()),
	})
}

// oauthClientRequest is the body of POST /v1/oauth-clients.
type oauthClientRequest struct {
	Tenant string   `json:"tenant"`
	Roles  []string `json:"roles"`
	Name   string   `json:"name"`
}

type oauthClientView struct {
	ClientID  string    `json:"client_id"`
	Tenant    string    `json:"tenant"`
	Roles     []string  `json:"roles"`
	Name      string    `json:"name"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by,omitempty"`
}

type oauthClientCreated struct {
	oauthClientView
	ClientSecret string `json:"client_secret"`
}

func viewOAuthClient(cl *signer.OAuthClient) oauthClientView {
	v := oauthClientView{ClientID: cl.ID, Tenant: cl.Tenant, Roles: cl.Roles, Name: cl.Name,
		Created: cl.Created.UTC(), CreatedBy: cl.CreatedBy}
	if v.Roles == nil {
		v.Roles = []string{}
	}
	return v
}

// createOAuthClient serves POST /v1/oauth-clients; the secret is shown once.
func (s *server) createOAuthClient(c *gin.Context) {
	var req oauthClientRequest
	if err := decodeBody(c, &req, true); err != nil {
		nativeBodyError(c, err)
		return
	}
	secret, cl, err := s.eng.CreateOAuthClient(c.Request.Context(), req.Tenant, req.Roles, req.Name)
	if err != nil {
		nativeError(c, err)
		return
	}
	credentialCreated(c, "/v1/oauth-clients/"+cl.ID, oauthClientCreated{oauthClientView: viewOAuthClient(cl), ClientSecret: secret})
}

// isFormMediaType reports a form body, which only the token endpoint takes.
func isFormMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && strings.EqualFold(mt, "application/x-www-form-urlencoded")
}

// oauthStatusCode names the RFC 6749 error of an answer the edge gives
// (body too large, rate limit, unknown method).
func oauthStatusCode(status int) string {
	switch {
	case status == http.StatusTooManyRequests || status >= 500:
		return "temporarily_unavailable"
	case status == http.StatusUnauthorized:
		return "invalid_client"
	}
	return "invalid_request"
}
