package api

import (
	"net/http"
	"sort"

	"github.com/gin-gonic/gin"
)

func (s *server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz probes the HSM and the store; a 503 names each failing component
// and why, so an operator sees at once which one to look at.
func (s *server) readyz(c *gin.Context) {
	fail := s.eng.Readiness(c.Request.Context())
	if len(fail) == 0 {
		c.JSON(http.StatusOK, gin.H{"status": "ready", "checks": gin.H{"hsm": "ok", "store": "ok"}})
		return
	}
	checks := gin.H{"hsm": "ok", "store": "ok"}
	names := make([]string, 0, len(fail))
	for name, err := range fail {
		checks[name] = err.Error()
		names = append(names, name)
	}
	sort.Strings(names)
	c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "failing": names, "checks": checks})
}
