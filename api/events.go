package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

func (s *server) mountEvents() {
	s.handle(native, "GET", "/v1/events", Access{TenantRoles: []string{signer.RoleAdmin, signer.RoleAuditor}}, s.listEvents)
}

// listEvents serves GET /v1/events for the caller's tenant, oldest first:
// ?since (RFC 3339) &operation (exact, or a prefix ending in *) &outcome
// (SUCCESS|FAIL) &limit (1..1000, 100) &cursor. A filtered page may hold
// fewer events than limit when the scan budget ran out first; nextCursor
// then continues it, and is absent only at the end of the log.
func (s *server) listEvents(c *gin.Context) {
	v, ok := queryParams(c, native, param{"operation", 64, operationChars}, param{"outcome", 16, wordChars},
		param{"cursor", maxNumberChars, wordChars}, param{"after", maxNumberChars, wordChars}, param{"since", 64, timeChars})
	if !ok {
		return
	}
	q := signer.EventQuery{Operation: v["operation"], Outcome: v["outcome"], Cursor: v["cursor"]}
	if v := v["after"]; v != "" && q.Cursor == "" {
		// after=<seq> predates cursors and means the same.
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			nativeError(c, queryInvalid("after", v, "must be a non-negative integer"))
			return
		}
		q.Cursor = v
	}
	if v := v["since"]; v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			nativeError(c, queryInvalid("since", v, "must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z"))
			return
		}
		q.Since = t
	}
	if q.Limit, ok = queryInt(c, native, "limit", 0, 1, 1000, "must be an integer from 1 to 1000"); !ok {
		return
	}
	page, err := s.eng.QueryEvents(c.Request.Context(), callerTenant(c), q)
	if err != nil {
		nativeError(c, err)
		return
	}
	body := gin.H{"data": page.Events}
	if page.NextCursor != "" {
		body["nextCursor"] = page.NextCursor
	}
	c.JSON(http.StatusOK, body)
}

func queryInvalid(param, value, msg string) error {
	e := signer.Invalid(param, value, msg)
	e.Fields[0].Location = "query"
	return e
}
