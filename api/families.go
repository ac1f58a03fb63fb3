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

// apigError writes the APIG envelope.
func apigError(c *gin.Context, err error) {
	e := signer.AsError(err)
	retryAfter(c, e)
	status, code := http.StatusInternalServerError, "APIG.9999"
	switch e.Kind {
	case signer.KindInvalid:
		status, code = http.StatusBadRequest, "APIG.2012"
	case signer.KindNotFound:
		status, code = http.StatusNotFound, "APIG.3021"
	case signer.KindConflict:
		status, code = http.StatusBadRequest, "APIG.3325"
	case signer.KindWrongState, signer.KindQuotaExceeded:
		status, code = http.StatusBadRequest, "APIG.3000"
	case signer.KindUnavailable:
		status, code = http.StatusServiceUnavailable, "APIG.9000"
	case signer.KindUnauthenticated:
		status, code = http.StatusUnauthorized, "APIG.1002"
	case signer.KindForbidden:
		status, code = http.StatusForbidden, "APIG.1005"
	}
	if e.Code != "" && len(e.Code) > 5 && e.Code[:5] == "APIG." {
		code = e.Code
	}
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
