package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hsmca/hsmca/signer"
	acmesvc "github.com/hsmca/hsmca/signer/acme"
)

// ACMEAPI is what the ACME handlers need of the family (signer/acme's
// Service): the protocol's resources, each taking the request's JWS, and
// the tenant's directory and EAB key routes.
type ACMEAPI interface {
	DirectoryResource(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)
	DirectoryExists(ctx context.Context, id string) error
	NonceFor(ctx context.Context, dir string) (string, error)
	NewAccount(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)
	Account(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)
	AccountOrders(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)
	KeyChange(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)
	NewOrder(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)
	Order(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)
	Finalize(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)
	Authorization(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)
	Challenge(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)
	Certificate(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)
	Revoke(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)
	RenewalInfoOf(ctx context.Context, r acmesvc.Request) (*acmesvc.Answer, error)

	CreateDirectory(ctx context.Context, tenant, caID string, p acmesvc.Policy) (*acmesvc.Directory, error)
	GetDirectory(ctx context.Context, tenant, id string) (*acmesvc.Directory, error)
	ListDirectories(ctx context.Context, tenant string) ([]*acmesvc.Directory, error)
	DeleteDirectory(ctx context.Context, tenant, id string) error
	CreateEABKey(ctx context.Context, tenant, dirID string) (*acmesvc.EABKey, error)
}

// mountACME mounts the ACME servers (public: requests authenticate with
// their JWS) and the tenant's routes that enable them.
func (s *server) mountACME() {
	pub := Access{Public: true}
	const d = "/acme/:dir"
	s.handle(acmeFamily, "GET", d+"/directory", pub, s.acme(s.acmeAPI.DirectoryResource, false))
	s.handle(acmeFamily, "HEAD", d+"/new-nonce", pub, s.acmeNonce(http.StatusOK))
	s.handle(acmeFamily, "GET", d+"/new-nonce", pub, s.acmeNonce(http.StatusNoContent))
	s.handle(acmeFamily, "POST", d+"/new-account", pub, s.acme(s.acmeAPI.NewAccount, true))
	s.handle(acmeFamily, "POST", d+"/acct/:id", pub, s.acme(s.acmeAPI.Account, true))
	s.handle(acmeFamily, "POST", d+"/acct/:id/orders", pub, s.acme(s.acmeAPI.AccountOrders, true))
	s.handle(acmeFamily, "POST", d+"/key-change", pub, s.acme(s.acmeAPI.KeyChange, true))
	s.handle(acmeFamily, "POST", d+"/new-order", pub, s.acme(s.acmeAPI.NewOrder, true))
	s.handle(acmeFamily, "POST", d+"/order/:id", pub, s.acme(s.acmeAPI.Order, true))
	s.handle(acmeFamily, "POST", d+"/order/:id/finalize", pub, s.acme(s.acmeAPI.Finalize, true))
	s.handle(acmeFamily, "POST", d+"/authz/:id", pub, s.acme(s.acmeAPI.Authorization, true))
	s.handle(acmeFamily, "POST", d+"/chall/:id/:type", pub, s.acme(s.acmeAPI.Challenge, true))
	s.handle(acmeFamily, "POST", d+"/cert/:id", pub, s.acme(s.acmeAPI.Certificate, true))
	s.handle(acmeFamily, "POST", d+"/revoke-cert", pub, s.acme(s.acmeAPI.Revoke, true))
	s.handle(acmeFamily, "GET", d+"/renewal-info/:id", pub, s.acme(s.acmeAPI.RenewalInfoOf, false))

	ops := Access{TenantRoles: []string{signer.RoleAdmin, signer.RoleCAOperator}}
	const dirs = "/v1/acme/directories"
	s.handle(native, "POST", dirs, ops, s.acmeCreateDirectory)
	s.handle(native, "GET", dirs, ops, s.acmeListDirectories)
	s.handle(native, "GET", dirs+"/:id", ops, s.acmeShowDirectory)
	s.handle(native, "DELETE", dirs+"/:id", ops, s.acmeDeleteDirectory)
	s.handle(native, "POST", dirs+"/:id/eab-keys", ops, s.acmeCreateEAB)
}

// acmeRequest is the request as the family takes it.
func (s *server) acmeRequest(c *gin.Context) acmesvc.Request {
	base := s.publicBase(c)
	return acmesvc.Request{Dir: c.Param("dir"), ID: c.Param("id"), Type: c.Param("type"), Base: base,
		URL: base + c.Request.URL.Path}
}

// acmeHeaders sends what every answer of a directory carries: a fresh
// nonce and the directory's index link (none for an unknown directory,
// so no id from the URL is echoed in a header).
func (s *server) acmeHeaders(c *gin.Context, r acmesvc.Request) {
	c.Header("Cache-Control", "no-store")
	if n, err := s.acmeAPI.NonceFor(c.Request.Context(), r.Dir); err == nil {
		c.Header("Replay-Nonce", n)
		c.Header("Link", "<"+r.Base+"/acme/"+r.Dir+`/directory>;rel="index"`)
	}
}

func (s *server) acmeNonce(status int) gin.HandlerFunc {
	return func(c *gin.Context) {
		r := s.acmeRequest(c)
		if err := s.acmeAPI.DirectoryExists(c.Request.Context(), r.Dir); err != nil {
			acmeError(c, err)
			return
		}
		s.acmeHeaders(c, r)
		c.Status(status)
	}
}

// acme serves one ACME resource; signed resources take a JWS body.
func (s *server) acme(call func(context.Context, acmesvc.Request) (*acmesvc.Answer, error), signed bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		r := s.acmeRequest(c)
		ctx := signer.WithCaller(c.Request.Context(), signer.Caller{Principal: "acme", RequestID: c.GetString("request_id")})
		if signed {
			body, err := io.ReadAll(c.Request.Body)
			if err != nil {
				writeProblem(c, http.StatusRequestEntityTooLarge, acmesvc.ErrorNS+"malformed", "request body too large")
				return
			}
			if ct := c.GetHeader("Content-Type"); ct != "application/jose+json" {
				s.acmeHeaders(c, r)
				writeProblem(c, http.StatusUnsupportedMediaType, acmesvc.ErrorNS+"malformed", "Content-Type must be application/jose+json")
				return
			}
			r.Body = body
		}
		ans, err := call(ctx, r)
		s.acmeHeaders(c, r)
		if err != nil {
			acmeError(c, err)
			return
		}
		if ans.Location != "" {
			c.Header("Location", ans.Location)
		}
		for _, l := range ans.Links {
			c.Writer.Header().Add("Link", l)
		}
		if ans.RetryAfter > 0 {
			c.Header("Retry-After", strconv.Itoa(int(max(1, ans.RetryAfter/time.Second))))
		}
		status := http.StatusOK
		if ans.Created {
			status = http.StatusCreated
		}
		switch {
		case ans.PEM != nil:
			c.Data(status, "application/pem-certificate-chain", ans.PEM)
		case ans.Body != nil:
			c.JSON(status, ans.Body)
		default:
			c.Status(status)
		}
	}
}

type acmeDirectoryView struct {
	ID        string         `json:"id"`
	CAID      string         `json:"ca_id"`
	URL       string         `json:"directory_url"`
	Policy    acmesvc.Policy `json:"policy"`
	CreatedAt time.Time      `json:"created_at"`
}

func (s *server) acmeView(c *gin.Context, d *acmesvc.Directory) acmeDirectoryView {
	return acmeDirectoryView{ID: d.ID, CAID: d.CAID, URL: s.publicBase(c) + "/acme/" + d.ID + "/directory",
		Policy: d.Policy, CreatedAt: d.Created}
}

func (s *server) acmeCreateDirectory(c *gin.Context) {
	var in struct {
		CAID   string          `json:"ca_id"`
		Policy *acmesvc.Policy `json:"policy"`
	}
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		nativeError(c, signer.Invalid("body", nil, "must be a JSON object {ca_id, policy}"))
		return
	}
	var p acmesvc.Policy
	if in.Policy != nil {
		p = *in.Policy
	}
	d, err := s.acmeAPI.CreateDirectory(c.Request.Context(), tenantOf(c), in.CAID, p)
	if err != nil {
		nativeError(c, err)
		return
	}
	c.JSON(http.StatusCreated, s.acmeView(c, d))
}

func (s *server) acmeListDirectories(c *gin.Context) {
	ds, err := s.acmeAPI.ListDirectories(c.Request.Context(), tenantOf(c))
	if err != nil {
		nativeError(c, err)
		return
	}
	out := []acmeDirectoryView{}
	for _, d := range ds {
		out = append(out, s.acmeView(c, d))
	}
	c.JSON(http.StatusOK, gin.H{"directories": out})
}

func (s *server) acmeShowDirectory(c *gin.Context) {
	d, err := s.acmeAPI.GetDirectory(c.Request.Context(), tenantOf(c), c.Param("id"))
	if err != nil {
		nativeError(c, err)
		return
	}
	c.JSON(http.StatusOK, s.acmeView(c, d))
}

func (s *server) acmeDeleteDirectory(c *gin.Context) {
	if err := s.acmeAPI.DeleteDirectory(c.Request.Context(), tenantOf(c), c.Param("id")); err != nil {
		nativeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *server) acmeCreateEAB(c *gin.Context) {
	k, err := s.acmeAPI.CreateEABKey(c.Request.Context(), tenantOf(c), c.Param("id"))
	if err != nil {
		nativeError(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"key_id": k.KeyID, "hmac_key": k.HMACKey, "directory_id": k.Directory})
}
