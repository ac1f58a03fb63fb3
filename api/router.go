// Package api serves hsmca's HTTP families on one Gin router. It parses
// requests, calls the signer engine and shapes responses and each family's
// error envelope. It holds no crypto and makes no storage calls of its own.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	acmesvc "github.com/hsmca/hsmca/signer/acme"
	"github.com/hsmca/hsmca/signer/admins"
	apigsvc "github.com/hsmca/hsmca/signer/apig"
	"github.com/hsmca/hsmca/signer/dts"
	"github.com/hsmca/hsmca/signer/keys"
	ocspsvc "github.com/hsmca/hsmca/signer/ocsp"
	pcasvc "github.com/hsmca/hsmca/signer/pca"
)

// CoreAPI is what the core's own routes (tokens, events, probes) and the
// guards (authentication, rate limits, metrics) call; *signer.Core
// implements it.
type CoreAPI interface {
	AuthenticateToken(ctx context.Context, secret string) (*signer.Token, error)
	AuthenticateTokenThrottled(ctx context.Context, secret string, rate float64, burst int64) (*signer.Token, signer.RateLimitAnswer, error)
	AuthenticateTokenAhead(ctx context.Context, secret string, rate float64, burst int64) (*signer.Token, *signer.CredentialCheck, signer.RateLimitAnswer, error)
	AuthenticateTokenCarried(ctx context.Context, secret string, rate float64, burst int64) (*signer.Token, *signer.CredentialCheck, signer.RateLimitAnswer, error)
	Throttle(ctx context.Context, principal string, rate float64, burst int64) (time.Duration, error)
	CreateToken(ctx context.Context, tenant string, roles []string, expiresAt *time.Time) (string, *signer.Token, error)
	ListTokens(ctx context.Context, tenant string) ([]signer.Token, error)
	RevokeToken(ctx context.Context, id string) error
	CreateAccessKey(ctx context.Context, tenant string, roles []string, expiresAt *time.Time) (string, *signer.AccessKey, error)
	ListAccessKeys(ctx context.Context, tenant string) ([]signer.AccessKey, error)
	RevokeAccessKey(ctx context.Context, id string) error
	AuthenticateAccessKey(ctx context.Context, chk signer.AccessKeyCheck) (*signer.AccessKey, error)
	CreateOAuthClient(ctx context.Context, tenant string, roles []string, name string) (string, *signer.OAuthClient, error)
	ListOAuthClients(ctx context.Context, tenant string) ([]signer.OAuthClient, error)
	RevokeOAuthClient(ctx context.Context, id string) error
	IssueAccessToken(ctx context.Context, clientID, secret string, ttl time.Duration) (string, *signer.Token, error)
	QueryEvents(ctx context.Context, tenant string, q signer.EventQuery) (*signer.EventPage, error)
	CheckpointEvents(ctx context.Context, tenant string) (*signer.Checkpoint, error)
	LatestCheckpoint(ctx context.Context, tenant string) (*signer.Checkpoint, error)
	GetCheckpoint(ctx context.Context, tenant string, seq uint64) (*signer.Checkpoint, error)
	ListCheckpoints(ctx context.Context, tenant string, limit int, cursor string) ([]signer.Checkpoint, string, error)
	CheckpointKeyInfo(ctx context.Context) (*signer.CheckpointKey, error)
	Readiness(ctx context.Context) map[string]error
	Metrics() *metrics.Metrics
}

// Options configure the router. Engine is the core the families' services
// are built on when their fields are nil; the handlers call the services
// and the core only through the interfaces above and in each family's file.
type Options struct {
	Engine       *signer.Core
	Admins       AdminsAPI // nil: admins.New(Engine)
	APIG         APIGAPI   // nil: signer/apig on Engine
	Keys         KeysAPI   // nil: signer/keys over Engine
	Logger       *slog.Logger
	MaxBodyBytes int64
	// TrustedProxy accepts admin certificates from the X-APP-CERTIFICATE
	// header; only behind a proxy that strips it from client requests.
	TrustedProxy bool
	// RateLimit limits each credential's request rate (ratelimit.go).
	RateLimit RateLimit
	// PublicRateLimit limits the rate of requests to public routes per
	// client address (ratelimit.go). RequestsPerSecond 0 disables it.
	PublicRateLimit PublicRateLimit
	// HSTS adds Strict-Transport-Security to every answer: set it when the
	// listener serves TLS.
	HSTS bool
	// DTS serves the MATTR ecosystem routes; nil: signer/dts over Engine
	// (without an issuer alternative name).
	DTS DTSAPI
	// PCA serves the CCM private CA routes; nil: signer/pca over Engine.
	PCA PCAAPI
	// AccessTokenTTL is the lifetime of an access token from
	// POST /oauth/token (0: signer.DefaultAccessTokenTTL, one hour).
	AccessTokenTTL time.Duration
	// PublicBaseURL is the daemon's public base URL (config
	// public_base_url, already checked, without a trailing slash). Empty:
	// URLs in answers are derived from each request (publicBase).
	PublicBaseURL string
	// OCSP answers the OCSP routes; nil: signer/ocsp's responder over the
	// PCA and DTS services (with the default per-client rates).
	OCSP OCSPAPI
	// ACME serves the ACME routes; nil: signer/acme issuing through PCA,
	// with the validator's defaults.
	ACME ACMEAPI
	// OverlapCredentialCheck lets the routes marked Access.Overlap run
	// beside the check of an API token this process found valid at its
	// last check (overlap.go; config overlap_credential_check).
	OverlapCredentialCheck bool
}

// Access says who may call a route. It is declared with the route, so the
// table of every route and its roles is the router itself (Routes lists it).
type Access struct {
	// Public routes need no credential (health, metrics, CRLs). Each
	// client address may call them PublicRateLimit times per second
	// (429 beyond), unless Unlimited.
	Public bool
	// Unlimited exempts a public route from the per-address limit: the
	// probes and the scrape (/healthz, /readyz, /metrics), which must
	// answer however often an orchestrator or a scraper asks.
	Unlimited bool
	// TenantRoles may call the route with an API token of a tenant.
	TenantRoles []string
	// PlatformRoles may call it as an administrator (client certificate).
	PlatformRoles []string
	// Loopback restricts the route to callers on the loopback interface.
	Loopback bool
	// Overlap: the handler's work up to its first write is reads and HSM
	// signatures (no key made, imported or destroyed), so that it may run
	// beside its API token's check (Options.OverlapCredentialCheck,
	// overlap.go).
	Overlap bool
	// Carry, with Overlap: the handler's first write is its operation's
	// event record (signing, verification) or a Create (an issued
	// certificate), which may carry the token's check instead of a round
	// trip of its own (a Redis store that is not a cluster;
	// signer.AuthenticateTokenCarried).
	Carry bool
}

// Family is one wire family: how it writes errors.
type Family struct {
	Name     string
	WriteErr func(c *gin.Context, err error)
	// RawBody: the routes take a body that is not JSON and check its
	// media type themselves (OCSP requests are DER).
	RawBody bool
}

// RouteInfo is one entry of the access table.
type RouteInfo struct {
	Method, Path string
	Family       string
	Access       Access
}

type server struct {
	eng    CoreAPI
	admins AdminsAPI
	pcaAPI PCAAPI
	log    *slog.Logger
	opts   Options
	routes map[string]RouteInfo // "METHOD path" -> entry
	engine *gin.Engine
	public *addrLimiter // nil: public routes are not limited
	dts    DTSAPI
	// ocspAPI answers the OCSP routes (ocsp.go).
	ocspAPI OCSPAPI
	// acmeAPI answers the ACME routes (acme.go).
	acmeAPI ACMEAPI
}

// Handler is the HTTP handler of every family: the Gin engine behind the
// edge checks every request meets first (edge.go).
type Handler struct {
	*gin.Engine
	s *server
}

// Router builds the HTTP handler with every family mounted.
func Router(o Options) *Handler {
	r, s := build(o)
	return &Handler{Engine: r, s: s}
}

// Routes returns the access table of a router built with o: every route,
// its family and who may call it.
func Routes(o Options) []RouteInfo {
	_, s := build(o)
	out := make([]RouteInfo, 0, len(s.routes))
	for _, ri := range s.routes {
		out = append(out, ri)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

func build(o Options) (*gin.Engine, *server) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	o = withServices(o)
	s := &server{eng: o.Engine, admins: o.Admins, pcaAPI: o.PCA, dts: o.DTS, log: o.Logger, opts: o,
		routes: map[string]RouteInfo{}, engine: r, ocspAPI: o.OCSP, acmeAPI: o.ACME}
	if o.PublicRateLimit.RequestsPerSecond > 0 {
		s.public = newAddrLimiter(o.PublicRateLimit, time.Now)
	}
	r.Use(s.requestID, s.recovery, s.observe, s.bodyLimit)
	r.NoRoute(func(c *gin.Context) {
		familyOfPath(c.Request.URL.Path).WriteErr(c, signer.E(signer.KindNotFound, "no such route"))
	})
	r.NoMethod(func(c *gin.Context) {
		writeStatus(c, familyOfPath(c.Request.URL.Path), http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed on this route")
	})

	probe := Access{Public: true, Unlimited: true}
	s.handle(native, "GET", "/healthz", probe, s.healthz)
	s.handle(native, "GET", "/readyz", probe, s.readyz)
	s.handle(native, "GET", "/metrics", probe, gin.WrapH(o.Engine.Metrics().Handler()))
	s.handle(native, "GET", "/openapi.yaml", Access{Public: true}, s.openapi)

	s.mountEvents()
	s.mountIdentity()
	s.mountKeys()
	s.mountEcosystem()
	s.mountPCA()
	s.mountAPIG()
	s.mountOCSP()
	s.mountACME()
	return r, s
}

// withServices builds, on o.Engine, each family service o leaves nil (the
// daemon passes its own; tests often pass only the core).
func withServices(o Options) Options {
	if o.Admins == nil {
		o.Admins = admins.New(o.Engine)
	}
	if o.APIG == nil {
		o.APIG = apigsvc.New(o.Engine)
	}
	if o.Keys == nil {
		o.Keys = keys.New(o.Engine)
	}
	if o.PCA == nil {
		o.PCA = pcasvc.New(o.Engine)
	}
	if o.DTS == nil {
		o.DTS = dts.New(o.Engine)
	}
	if o.OCSP == nil {
		var pubs []*ocspsvc.Publisher
		for _, svc := range []any{o.PCA, o.DTS} {
			if p, ok := svc.(interface{ OCSPPublisher() *ocspsvc.Publisher }); ok {
				pubs = append(pubs, p.OCSPPublisher())
			}
		}
		o.OCSP = ocspsvc.NewResponder(o.Engine, ocspsvc.ResponderConfig{}, pubs...)
	}
	if o.ACME == nil {
		iss, _ := o.PCA.(acmesvc.Issuer)
		o.ACME = acmesvc.New(o.Engine, iss, acmesvc.Config{})
	}
	return o
}

// handle registers a route with its family and access rule. Every route
// goes through here: authentication and the role check run before the
// handlers, and a route without a rule cannot exist.
func (s *server) handle(f Family, method, path string, a Access, h ...gin.HandlerFunc) {
	key := method + " " + path
	if _, dup := s.routes[key]; dup {
		panic("api: route registered twice: " + key)
	}
	if !a.Public && len(a.TenantRoles) == 0 && len(a.PlatformRoles) == 0 && !a.Loopback {
		panic("api: route without any allowed role: " + key)
	}
	s.routes[key] = RouteInfo{Method: method, Path: path, Family: f.Name, Access: a}
	s.eng.Metrics().AllowRoutes(path)
	chain := append([]gin.HandlerFunc{s.guard(f, a)}, h...)
	s.engine.Handle(method, path, chain...)
}
