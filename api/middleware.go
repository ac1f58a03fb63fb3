package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hsmca/hsmca/internal/logjson"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
)

const requestIDHeader = "X-Request-Id"

// requestID takes a well-formed incoming id or makes one, and echoes it.
func (s *server) requestID(c *gin.Context) {
	id := c.GetHeader(requestIDHeader)
	if !validRequestID(id) {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	c.Set("request_id", id)
	c.Header(requestIDHeader, id)
	c.Next()
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// recovery turns a panic into a 500 in the native envelope, logging the
// panic value without request bodies or headers (they may hold secrets).
func (s *server) recovery(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic serving request", "route", c.FullPath(), "request_id", c.GetString("request_id"),
				"panic", clip(fmt.Sprint(v), maxLoggedField))
			if !c.Writer.Written() {
				nativeError(c, signer.E(signer.KindInternal, "internal error"))
			}
			c.Abort()
		}
	}()
	c.Next()
}

// observe records metrics by route template and writes one access-log line.
// Nothing of the request beyond method, route, status and timing is logged;
// every label value comes from a fixed set (metrics.ObserveHTTP) and every
// logged string is bounded (clip).
func (s *server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	d := time.Since(start)
	route := c.FullPath()
	if route == "" {
		route = metrics.RouteUnmatched
	}
	status := c.Writer.Status()
	s.eng.Metrics().ObserveHTTP(route, c.Request.Method, status, d)
	if route == "/metrics" || route == "/healthz" || route == "/readyz" {
		return
	}
	method, ms := metrics.HTTPMethod(c.Request.Method), float64(d.Microseconds())/1000
	id, principal := c.GetString("request_id"), clip(signer.CallerFrom(c.Request.Context()).Principal, maxLoggedField)
	if status >= 500 && len(c.Errors) > 0 {
		// The client sees a generic message; the operator needs the cause.
		s.log.Error("request failed", "method", method, "route", route, "status", status, "duration_ms", ms,
			"request_id", id, "principal", principal, "err", clip(c.Errors.Last().Err.Error(), maxLoggedField))
		return
	}
	if h, ok := s.log.Handler().(*logjson.Handler); ok {
		// The same line, written without a slog record (logjson).
		h.LogRequest(&logjson.Request{Method: method, Route: route, Status: status, DurationMS: ms,
			RequestID: id, Principal: principal})
		return
	}
	s.log.Info("request", "method", method, "route", route, "status", status, "duration_ms", ms,
		"request_id", id, "principal", principal)
}

// keepCause attaches the cause of a server-side failure to the request so
// that observe logs it; answers below 500 are the caller's business.
func keepCause(c *gin.Context, status int, e *signer.Error) {
	if status >= 500 && e != nil {
		_ = c.Error(e)
	}
}

// bodyLimit caps request bodies; reading past the limit fails and the
// handler answers 413. A declared length over the limit is refused by the
// route's guard (admitBody), in the route's family envelope.
func (s *server) bodyLimit(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.opts.MaxBodyBytes)
	c.Next()
}
