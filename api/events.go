package api

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

func (s *server) mountEvents() {
	s.handle(native, "GET", "/v1/events", Access{TenantRoles: []string{signer.RoleAdmin, signer.RoleAuditor}}, s.listEvents)
}

// listEvents serves GET /v1/events for the caller's tenant.
func (s *server) listEvents(c *gin.Context) {
	var after uint64
	if v := c.Query("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			nativeError(c, queryInvalid("after", v, "must be a non-negative integer"))
			return
		}
		after = n
	}
	limit := 100
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			nativeError(c, queryInvalid("limit", v, "must be an integer from 1 to 1000"))
			return
		}
		limit = n
	}
	caller := signer.CallerFrom(c.Request.Context())
	evs, err := s.eng.ListEvents(c.Request.Context(), caller.Tenant, after, limit)
	if err != nil {
		nativeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": evs})
}

func queryInvalid(param, value, msg string) error {
	e := signer.Invalid(param, value, msg)
	e.Fields[0].Location = "query"
	return e
}
