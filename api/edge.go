package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hsmca/hsmca/metrics"
)

// The edge: what every request meets before routing, authentication or
// any read of its body.
//
// A method outside the standard set (metrics.KnownHTTPMethod) answers 501
// Not Implemented at once, for every path: RFC 9110 asks 501 of a server
// that does not recognise a method, and answering before the route lookup
// keeps an invented method from costing more than its own bytes. A known
// method the route does not take answers 405 as before. In metrics the
// request counts as method OTHER, route "unmatched", and its log line
// carries at most the first maxLoggedMethod bytes of the method.

const (
	// hstsValue asks browsers to use HTTPS for two years.
	hstsValue = "max-age=63072000"
	// maxLoggedMethod bounds the part of an unknown method that is logged.
	maxLoggedMethod = 32
	// maxLoggedField bounds any other string a log line takes from a
	// request or a request's error.
	maxLoggedField = 1024
)

// ServeHTTP sets the headers every answer carries and refuses unknown
// methods, then hands the request to the router.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	if h.s.opts.HSTS {
		hdr.Set("Strict-Transport-Security", hstsValue)
	}
	if !metrics.KnownHTTPMethod(r.Method) {
		h.s.notImplemented(w, r)
		return
	}
	h.Engine.ServeHTTP(w, r)
}

// notImplemented answers a method outside the standard set: 501 in the
// envelope of the family whose URL space holds the path.
func (s *server) notImplemented(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	f := familyOfPath(r.URL.Path)
	raw, _ := json.Marshal(statusBody(f, http.StatusNotImplemented, "NotImplemented",
		"this method is not implemented; use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS"))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	w.WriteHeader(http.StatusNotImplemented)
	_, _ = w.Write(raw)
	d := time.Since(start)
	s.eng.Metrics().ObserveHTTP(metrics.RouteUnmatched, r.Method, http.StatusNotImplemented, d)
	s.log.Info("request", "method", metrics.Other, "method_prefix", clip(r.Method, maxLoggedMethod),
		"route", metrics.RouteUnmatched, "status", http.StatusNotImplemented,
		"duration_ms", float64(d.Microseconds())/1000)
}

// clip cuts s to at most n bytes (on a character boundary) and says how
// long it was, so that no log line grows with what a client sends.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "...(" + strconv.Itoa(len(s)) + " bytes)"
}
