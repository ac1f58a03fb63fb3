package api

import (
	"crypto/x509"
	"errors"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/admins"
)

// certHeader carries an administrator's certificate from a TLS-terminating
// proxy (URL-encoded PEM, as nginx's $ssl_client_escaped_cert, or base64
// DER). It is read only in trusted-proxy mode.
const certHeader = "X-APP-CERTIFICATE"

// bearer extracts a presented token from Authorization: Bearer or X-Auth-Token.
func bearer(c *gin.Context) string {
	if h := c.GetHeader("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
	}
	return strings.TrimSpace(c.GetHeader("X-Auth-Token"))
}

// guard authenticates the caller and checks the route's access rule,
// answering in the route's family envelope: 401 without a valid
// credential, 403 with one that lacks the role.
func (s *server) guard(f Family, a Access) gin.HandlerFunc {
	return func(c *gin.Context) {
		if a.Public && !a.Unlimited && !s.publicThrottle(c, f) {
			return
		}
		if a.Loopback {
			if !s.directLoopback(c) {
				f.WriteErr(c, signer.E(signer.KindForbidden, "this route answers only to direct requests on the loopback interface"))
				return
			}
			if msg := localClientProblem(c); msg != "" {
				f.WriteErr(c, signer.E(signer.KindForbidden, "%s", msg))
				return
			}
		}
		if !s.admitBody(c, f) {
			return
		}
		if a.Public || (a.Loopback && len(a.TenantRoles) == 0 && len(a.PlatformRoles) == 0) {
			c.Next()
			return
		}
		defer clearSignedBody(c)
		caller, limited, err := s.authenticate(c, f, a)
		if errors.Is(err, errBodyTooLarge) {
			writeStatus(c, f, http.StatusRequestEntityTooLarge, "PayloadTooLarge",
				"request body exceeds "+strconv.FormatInt(s.opts.MaxBodyBytes, 10)+" bytes")
			return
		}
		if err != nil {
			f.WriteErr(c, err)
			return
		}
		caller.RequestID = c.GetString("request_id")
		c.Request = c.Request.WithContext(signer.WithCaller(c.Request.Context(), caller))
		if !s.throttle(c, f, caller, limited) {
			return
		}
		allowed := a.TenantRoles
		if caller.Tenant == "" {
			allowed = a.PlatformRoles
		}
		for _, r := range caller.Roles {
			if slices.Contains(allowed, r) {
				if caller.Check != nil {
					s.nextBeside(c, f, caller.Check)
					return
				}
				c.Next()
				return
			}
		}
		if caller.Check != nil && s.refuseBeside(c, f, caller.Check, nil) {
			return
		}
		f.WriteErr(c, signer.E(signer.KindForbidden, "this credential lacks the role for this operation"))
	}
}

// authenticate resolves the caller's credential: an API token or an
// access key's request signature (tenant principals, aksk.go) or an
// administrator's client certificate (platform principals). When a request carries both, a route that only platform
// roles may call uses the certificate and every other route the token;
// the credential not chosen is ignored, valid or not. With only one
// credential that one is used, and the role check then answers 403 if it
// is the wrong kind.
//
// With a rate limit configured, a token is looked up and counted against
// its limit in one store round trip; the limiter's answer is returned for
// throttle (nil when the credential was not counted yet).
func (s *server) authenticate(c *gin.Context, f Family, a Access) (signer.Caller, *signer.RateLimitAnswer, error) {
	secret := bearer(c)
	authz := c.GetHeader("Authorization")
	signed := isSignedRequest(authz)
	cert, certErr := s.clientCertificate(c)
	hasCert := cert != nil || certErr != nil
	platformOnly := len(a.PlatformRoles) > 0 && len(a.TenantRoles) == 0
	switch {
	case hasCert && (platformOnly || (secret == "" && !signed)):
		if certErr != nil {
			return signer.Caller{}, nil, certErr
		}
		caller, err := s.admins.Authenticate(c.Request.Context(), cert)
		return caller, nil, err
	case signed:
		caller, err := s.authenticateSigned(c, f, authz)
		return caller, nil, err
	case secret != "":
		var (
			tok     *signer.Token
			limited *signer.RateLimitAnswer
			err     error
		)
		var check *signer.CredentialCheck
		rl := s.opts.RateLimit
		switch {
		case a.Overlap && s.opts.OverlapCredentialCheck:
			var ans signer.RateLimitAnswer
			ahead := s.eng.AuthenticateTokenAhead
			if a.Carry {
				ahead = s.eng.AuthenticateTokenCarried
			}
			tok, check, ans, err = ahead(c.Request.Context(), secret, rl.RequestsPerSecond, rl.burst())
			// With a check under way the request is admitted for now:
			// the check's own answer comes before the request's.
			limited = &ans
		case rl.RequestsPerSecond > 0:
			var ans signer.RateLimitAnswer
			tok, ans, err = s.eng.AuthenticateTokenThrottled(c.Request.Context(), secret, rl.RequestsPerSecond, rl.burst())
			limited = &ans
		default:
			tok, err = s.eng.AuthenticateToken(c.Request.Context(), secret)
		}
		if err != nil {
			return signer.Caller{}, nil, err
		}
		return signer.Caller{Tenant: tok.Tenant, Principal: "token:" + tok.ID, Roles: tok.Roles, Check: check}, limited, nil
	}
	return signer.Caller{}, nil, signer.E(signer.KindUnauthenticated,
		"missing credential: send Authorization: Bearer <token> or X-Auth-Token, an access-key signature (Huawei families), or an administrator's client certificate")
}

// clientCertificate returns the administrator certificate the request
// presents, if any. In trusted-proxy mode the proxy's header wins over the
// TLS peer (which is then the proxy itself); otherwise the header is
// ignored, and only a TLS client certificate counts, one the listener has
// already verified against the configured client CA.
func (s *server) clientCertificate(c *gin.Context) (*x509.Certificate, error) {
	if s.opts.TrustedProxy {
		if v := strings.TrimSpace(c.GetHeader(certHeader)); v != "" {
			v = unescapeCertHeader(v)
			cert, err := admins.ParseCertificate(v)
			if err != nil {
				return nil, signer.E(signer.KindUnauthenticated, "unreadable %s header: %v", certHeader, err)
			}
			return cert, nil
		}
	}
	if tls := c.Request.TLS; tls != nil && len(tls.PeerCertificates) > 0 {
		return tls.PeerCertificates[0], nil
	}
	return nil, nil
}

// unescapeCertHeader undoes the proxy's URL encoding. Path-style
// unescaping first, so that a '+' of base64 left unescaped survives; a
// PEM marker that then reads "BEGIN+CERTIFICATE" shows a query-style
// encoder ('+' for space, and so '%2B' for every real '+').
func unescapeCertHeader(v string) string {
	dec, err := url.PathUnescape(v)
	if err != nil {
		return v
	}
	if strings.Contains(dec, "-----BEGIN+") {
		if q, err := url.QueryUnescape(v); err == nil {
			return q
		}
	}
	return dec
}

// directLoopback reports a request made on the loopback interface by a
// local client, not relayed by a proxy: in trusted-proxy mode every request
// may come from a local proxy, and a header a proxy adds shows one is there.
func (s *server) directLoopback(c *gin.Context) bool {
	if s.opts.TrustedProxy || relayed(c.Request.Header) {
		return false
	}
	return isLoopback(c)
}

// proxyHeaders are headers proxies, load balancers and CDNs add to say
// who the client was or that they relayed the request. Any of them on a
// request from loopback means a local proxy relayed it, and the client is
// elsewhere. Every X-Forwarded-* and X-Original-* header counts too.
var proxyHeaders = map[string]bool{
	"Forwarded": true, "Via": true, "X-Real-Ip": true, "X-Client-Ip": true, "Client-Ip": true,
	"True-Client-Ip": true, "Cf-Connecting-Ip": true, "Cf-Connecting-Ipv6": true, "Fastly-Client-Ip": true,
	"X-Cluster-Client-Ip": true, "X-Proxyuser-Ip": true, "Proxy-Client-Ip": true, "Wl-Proxy-Client-Ip": true,
	"X-Originating-Ip": true, "X-Remote-Ip": true, "X-Remote-Addr": true, "X-Host": true,
	"X-Envoy-External-Address": true, "X-Azure-Clientip": true, "X-Azure-Socketip": true,
	"X-Appengine-User-Ip": true, "X-Coming-From": true, "X-Proxymesh-Ip": true,
	http.CanonicalHeaderKey(certHeader): true,
}

// relayed reports a request carrying any header of a proxy.
func relayed(h http.Header) bool {
	for name := range h {
		if proxyHeaders[name] || strings.HasPrefix(name, "X-Forwarded-") || strings.HasPrefix(name, "X-Original-") {
			return true
		}
	}
	return false
}

// localClientProblem refuses what a web browser on the host could send to
// a loopback route: a page's request carries Origin (every cross-origin
// request and every POST), or Sec-Fetch-Site naming a site; a page served
// from a name that resolves to 127.0.0.1 (DNS rebinding) names that host in
// Host; and a request a page can send without a CORS preflight cannot
// carry Content-Type: application/json, so a body must. The ops tools
// (curl, the hsmca CLI) send none of the first three.
func localClientProblem(c *gin.Context) string {
	r := c.Request
	if r.Header.Get("Origin") != "" {
		return "this route refuses requests from web pages (Origin header)"
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "none" {
		return "this route refuses requests from web pages (Sec-Fetch-Site: " + clip(site, 32) + ")"
	}
	if !loopbackHost(r.Host) {
		return "this route answers only to requests addressed to localhost or a loopback address (Host header)"
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return "this route needs Content-Type: application/json"
		}
	}
	return ""
}

// loopbackHost reports a Host header naming localhost or a loopback
// address, with or without a port.
func loopbackHost(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func isLoopback(c *gin.Context) bool {
	host, _, err := net.SplitHostPort(c.Request.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
