package api

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

// RateLimit is the per-credential request rate: every API token and every
// administrator certificate may make RequestsPerSecond requests per second
// on average, with bursts of up to Burst. RequestsPerSecond 0 disables it.
type RateLimit struct {
	RequestsPerSecond float64
	// Burst defaults to twice RequestsPerSecond (at least 1).
	Burst int
}

func (r RateLimit) burst() int64 {
	if r.Burst > 0 {
		return int64(r.Burst)
	}
	return max(1, int64(math.Ceil(2*r.RequestsPerSecond)))
}

// throttle runs after authentication: a caller over its rate gets 429 with
// Retry-After (whole seconds) in the route's family envelope. Requests
// without a credential (health, metrics, CRLs) are not limited here. When
// the limiter itself cannot answer (the store is down) the request goes
// on: it meets the same store on its way and fails there with the right
// status, and an outage of the limiter must not refuse every caller.
//
// answered is the limiter's answer when authentication already counted
// the request (API tokens); otherwise the request is counted here.
func (s *server) throttle(c *gin.Context, f Family, caller signer.Caller, answered *signer.RateLimitAnswer) bool {
	rl := s.opts.RateLimit
	if !(rl.RequestsPerSecond > 0) {
		return true
	}
	var (
		wait time.Duration
		err  error
	)
	if answered != nil {
		wait, err = answered.Wait, answered.Err
	} else {
		wait, err = s.eng.Throttle(c.Request.Context(), caller.Principal, rl.RequestsPerSecond, rl.burst())
	}
	if err != nil {
		s.log.Warn("rate limiter unavailable; request admitted", "request_id", c.GetString("request_id"), "err", clip(err.Error(), maxLoggedField))
		return true
	}
	if wait <= 0 {
		return true
	}
	secs := max(1, int64(math.Ceil(wait.Seconds())))
	c.Header("Retry-After", strconv.FormatInt(secs, 10))
	writeStatus(c, f, http.StatusTooManyRequests, "TooManyRequests",
		"rate limit exceeded for this credential; retry after "+strconv.FormatInt(secs, 10)+" s")
	return false
}
