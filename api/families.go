package api

import (
	"math"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

// The wire families. Each maps the engine's error kinds to its own status
// codes and envelope in exactly one place.
var (
	native     = Family{Name: "native", WriteErr: nativeError}
	pca        = Family{Name: "pca", WriteErr: pcaError}
	apig       = Family{Name: "apig", WriteErr: apigError}
	czertainly = Family{Name: "czertainly", WriteErr: czertainlyError}
)

// huaweiEnvelope is the error body of the PCA and APIG families.
type huaweiEnvelope struct {
	Code string `json:"error_code"`
	Msg  string `json:"error_msg"`
}

// apigError writes the APIG envelope, with the status and code of the
// family's table (apig_errors.go).
func apigError(c *gin.Context, err error) {
	e := signer.AsError(err)
	retryAfter(c, e)
	status, code := apigAnswerOf(e)
	keepCause(c, status, e)
	c.AbortWithStatusJSON(status, huaweiEnvelope{Code: code, Msg: e.Msg})
}

// czertainlyError writes {"message"}; validation failures are 422 with a
// JSON array of messages.
func czertainlyError(c *gin.Context, err error) {
	e := signer.AsError(err)
	retryAfter(c, e)
	status := http.StatusInternalServerError
	switch e.Kind {
	case signer.KindInvalid:
		msgs := make([]string, 0, len(e.Fields))
		for _, f := range e.Fields {
			msgs = append(msgs, f.Field+": "+f.Msg)
		}
		if len(msgs) == 0 {
			msgs = append(msgs, e.Msg)
		}
		c.AbortWithStatusJSON(http.StatusUnprocessableEntity, msgs)
		return
	case signer.KindNotFound:
		status = http.StatusNotFound
	case signer.KindConflict:
		status = http.StatusBadRequest
	case signer.KindWrongState:
		status = http.StatusConflict
	case signer.KindUnavailable:
		status = http.StatusServiceUnavailable
	case signer.KindUnauthenticated:
		status = http.StatusUnauthorized
	case signer.KindForbidden:
		status = http.StatusForbidden
	}
	keepCause(c, status, e)
	c.AbortWithStatusJSON(status, gin.H{"message": e.Msg})
}

var _ = []Family{pca, apig, czertainly}

// retryAfter sends Retry-After (whole seconds, at least 1) when the engine
// says when to try again (a busy heavy-work pool, signer/heavy.go).
func retryAfter(c *gin.Context, e *signer.Error) {
	if e.RetryAfter > 0 {
		c.Header("Retry-After", strconv.FormatInt(max(1, int64(math.Ceil(e.RetryAfter.Seconds()))), 10))
	}
}
