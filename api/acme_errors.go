package api

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/hsmca/hsmca/signer"
	acmesvc "github.com/hsmca/hsmca/signer/acme"
)

// acmeFamily answers ACME requests: errors are problem documents
// (RFC 7807, application/problem+json) with the ACME error types of
// RFC 8555 §6.7.
var acmeFamily = Family{Name: "acme", WriteErr: acmeError}

// acmeProblem is an ACME problem document.
type acmeProblem struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
	Status int    `json:"status"`
}

// acmeStatus is the one table from the family's reasons to HTTP statuses;
// errors without a reason take their kind's.
var acmeStatus = map[signer.Reason]int{
	acmesvc.ReasonAccountDoesNotExist:     http.StatusBadRequest,
	acmesvc.ReasonAlreadyRevoked:          http.StatusBadRequest,
	acmesvc.ReasonAlreadyReplaced:         http.StatusConflict,
	acmesvc.ReasonBadCSR:                  http.StatusBadRequest,
	acmesvc.ReasonBadNonce:                http.StatusBadRequest,
	acmesvc.ReasonBadPublicKey:            http.StatusBadRequest,
	acmesvc.ReasonBadRevocationReason:     http.StatusBadRequest,
	acmesvc.ReasonBadSignatureAlgorithm:   http.StatusBadRequest,
	acmesvc.ReasonExternalAccountRequired: http.StatusUnauthorized,
	acmesvc.ReasonInvalidContact:          http.StatusBadRequest,
	acmesvc.ReasonMalformed:               http.StatusBadRequest,
	acmesvc.ReasonOrderNotReady:           http.StatusForbidden,
	acmesvc.ReasonRateLimited:             http.StatusTooManyRequests,
	acmesvc.ReasonRejectedIdentifier:      http.StatusBadRequest,
	acmesvc.ReasonServerInternal:          http.StatusInternalServerError,
	acmesvc.ReasonUnauthorized:            http.StatusForbidden,
	acmesvc.ReasonUnsupportedContact:      http.StatusBadRequest,
	acmesvc.ReasonUnsupportedIdentifier:   http.StatusBadRequest,
	acmesvc.ReasonConflict:                http.StatusConflict,
}

// acmeAnswerOf is the status and ACME type of an error.
func acmeAnswerOf(e *signer.Error) (int, string) {
	if st, ok := acmeStatus[e.Reason]; ok {
		typ := string(e.Reason)
		if e.Reason == acmesvc.ReasonConflict {
			typ = string(acmesvc.ReasonMalformed)
		}
		if e.Kind == signer.KindNotFound {
			st = http.StatusNotFound
		}
		return st, acmesvc.ErrorNS + typ
	}
	switch e.Kind {
	case signer.KindInvalid:
		return http.StatusBadRequest, acmesvc.ErrorNS + "malformed"
	case signer.KindNotFound:
		return http.StatusNotFound, acmesvc.ErrorNS + "malformed"
	case signer.KindConflict, signer.KindWrongState:
		return http.StatusConflict, acmesvc.ErrorNS + "malformed"
	case signer.KindQuotaExceeded:
		return http.StatusTooManyRequests, acmesvc.ErrorNS + "rateLimited"
	case signer.KindUnauthenticated, signer.KindForbidden:
		return http.StatusForbidden, acmesvc.ErrorNS + "unauthorized"
	case signer.KindUnavailable:
		return http.StatusServiceUnavailable, acmesvc.ErrorNS + "serverInternal"
	}
	return http.StatusInternalServerError, acmesvc.ErrorNS + "serverInternal"
}

// acmeError writes a problem document.
func acmeError(c *gin.Context, err error) {
	e := signer.AsError(err)
	retryAfter(c, e)
	status, typ := acmeAnswerOf(e)
	keepCause(c, status, e)
	if e.Reason == acmesvc.ReasonConflict && len(e.Fields) > 0 {
		if loc, ok := e.Fields[0].Value.(string); ok {
			c.Header("Location", loc)
		}
	}
	writeProblem(c, status, typ, e.Msg)
}

func writeProblem(c *gin.Context, status int, typ, detail string) {
	body, _ := json.Marshal(acmeProblem{Type: typ, Detail: detail, Status: status})
	c.Header("Cache-Control", "no-store")
	c.Data(status, "application/problem+json", body)
	c.Abort()
}
