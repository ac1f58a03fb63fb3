package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

func (s *server) mountEvents() {
	read := Access{TenantRoles: []string{signer.RoleAdmin, signer.RoleAuditor}}
	s.handle(native, "GET", "/v1/events", read, s.listEvents)
	s.handle(native, "GET", "/v1/events/checkpoints", read, s.listCheckpoints)
	s.handle(native, "POST", "/v1/events/checkpoints", Access{TenantRoles: []string{signer.RoleAdmin}}, s.createCheckpoint)
	s.handle(native, "GET", "/v1/events/checkpoints/latest", read, s.latestCheckpoint)
	s.handle(native, "GET", "/v1/events/checkpoints/key", read, s.checkpointKey)
	s.handle(native, "GET", "/v1/events/checkpoints/:seq", read, s.getCheckpoint)
}

// listCheckpoints serves GET /v1/events/checkpoints: the tenant's signed
// chain heads, newest first (?limit 1..1000, default 100, &cursor).
func (s *server) listCheckpoints(c *gin.Context) {
	limit, ok := queryInt(c, native, "limit", 0, 1, 1000, "must be an integer from 1 to 1000")
	if !ok {
		return
	}
	cursor, ok := queryParam(c, native, cursorParam)
	if !ok {
		return
	}
	cps, next, err := s.eng.ListCheckpoints(c.Request.Context(), callerTenant(c), limit, cursor)
	if err != nil {
		nativeError(c, err)
		return
	}
	body := gin.H{"data": cps}
	if next != "" {
		body["nextCursor"] = next
	}
	c.JSON(http.StatusOK, body)
}

// createCheckpoint serves POST /v1/events/checkpoints: sign the head of
// the tenant's chain now (the EVENT_CHECKPOINT record included).
func (s *server) createCheckpoint(c *gin.Context) {
	cp, err := s.eng.CheckpointEvents(c.Request.Context(), callerTenant(c))
	if err != nil {
		nativeError(c, err)
		return
	}
	c.JSON(http.StatusCreated, cp)
}

func (s *server) latestCheckpoint(c *gin.Context) {
	cp, err := s.eng.LatestCheckpoint(c.Request.Context(), callerTenant(c))
	if err != nil {
		nativeError(c, err)
		return
	}
	c.JSON(http.StatusOK, cp)
}

func (s *server) getCheckpoint(c *gin.Context) {
	seq, err := signer.ParseCheckpointSeq(c.Param("seq"))
	if err != nil {
		nativeError(c, err)
		return
	}
	cp, err := s.eng.GetCheckpoint(c.Request.Context(), callerTenant(c), seq)
	if err != nil {
		nativeError(c, err)
		return
	}
	c.JSON(http.StatusOK, cp)
}

// checkpointKey serves the checkpoint key's public key and self-signed
// certificate (made the first time it is asked for).
func (s *server) checkpointKey(c *gin.Context) {
	k, err := s.eng.CheckpointKeyInfo(c.Request.Context())
	if err != nil {
		nativeError(c, err)
		return
	}
	c.JSON(http.StatusOK, k)
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
