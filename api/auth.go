package api

import (
	"net"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

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
		if a.Loopback && !isLoopback(c) {
			f.WriteErr(c, signer.E(signer.KindForbidden, "this route answers only on the loopback interface"))
			return
		}
		if a.Public || (a.Loopback && len(a.TenantRoles) == 0 && len(a.PlatformRoles) == 0) {
			c.Next()
			return
		}
		caller, err := s.authenticate(c)
		if err != nil {
			f.WriteErr(c, err)
			return
		}
		caller.RequestID = c.GetString("request_id")
		c.Request = c.Request.WithContext(signer.WithCaller(c.Request.Context(), caller))
		allowed := a.TenantRoles
		if caller.Tenant == "" {
			allowed = a.PlatformRoles
		}
		for _, r := range caller.Roles {
			if slices.Contains(allowed, r) {
				c.Next()
				return
			}
		}
		f.WriteErr(c, signer.E(signer.KindForbidden, "this credential lacks the role for this operation"))
	}
}

// authenticate resolves the caller's credential.
func (s *server) authenticate(c *gin.Context) (signer.Caller, error) {
	secret := bearer(c)
	if secret == "" {
		return signer.Caller{}, signer.E(signer.KindUnauthenticated, "missing credential: send Authorization: Bearer <token> or X-Auth-Token")
	}
	tok, err := s.eng.AuthenticateToken(c.Request.Context(), secret)
	if err != nil {
		return signer.Caller{}, err
	}
	return signer.Caller{Tenant: tok.Tenant, Principal: "token:" + tok.ID, Roles: tok.Roles}, nil
}

func isLoopback(c *gin.Context) bool {
	host, _, err := net.SplitHostPort(c.Request.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
