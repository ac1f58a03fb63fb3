package api

import (
	"net/http"
	"sort"

	"github.com/gin-gonic/gin"
)

func (s *server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz probes the HSM and the store. Two views of one answer:
//
//   - the detailed one, for a caller on the loopback interface (direct, with
//     trusted-proxy mode off) or one presenting a valid credential (an API
//     token of any role, or an administrator's certificate): each
//     component's state and, on 503, why it fails (token label, PIN or
//     store errors, the Redis address), so an operator sees at once which
//     one to look at;
//   - the plain one, for everyone else: {"status":"ready"}, or on 503
//     {"status":"not ready","failing":[names]} and no reason.
//
// The status code is the same in both, so probes and load balancers need
// no credential.
func (s *server) readyz(c *gin.Context) {
	fail := s.eng.Readiness(c.Request.Context())
	names := make([]string, 0, len(fail))
	for name := range fail {
		names = append(names, name)
	}
	sort.Strings(names)
	detail := s.maySeeReadiness(c)
	if len(fail) == 0 {
		if !detail {
			c.JSON(http.StatusOK, gin.H{"status": "ready"})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready", "checks": gin.H{"hsm": "ok", "store": "ok"}})
		return
	}
	if !detail {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "failing": names})
		return
	}
	checks := gin.H{"hsm": "ok", "store": "ok"}
	for name, err := range fail {
		checks[name] = err.Error()
	}
	c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "failing": names, "checks": checks})
}

// maySeeReadiness reports whether the caller may read the reasons of
// /readyz: a direct loopback caller, or a valid credential of any role.
// A credential that cannot be checked (the store is down) gets the plain
// view; loopback still sees why.
func (s *server) maySeeReadiness(c *gin.Context) bool {
	if s.directLoopback(c) {
		return true
	}
	ctx := c.Request.Context()
	if secret := bearer(c); secret != "" {
		_, err := s.eng.AuthenticateToken(ctx, secret)
		return err == nil
	}
	if cert, err := s.clientCertificate(c); err == nil && cert != nil {
		_, err := s.admins.Authenticate(ctx, cert)
		return err == nil
	}
	return false
}
