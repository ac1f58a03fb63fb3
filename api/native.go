package api

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

// nativeEnvelope is the error body of families 1 (MATTR) and 5 (hsmca's
// own, "as family 1"). details is always there, an empty list when no
// field is at fault, as MATTR's error schema has it: every writer of the
// envelope (handlers, guards, the edge, the recovery) goes through
// MarshalJSON, so none can leave it out.
type nativeEnvelope struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details []nativeDetail `json:"details"`
}

// MarshalJSON writes the envelope with details as a list, never null.
func (e nativeEnvelope) MarshalJSON() ([]byte, error) {
	type wire nativeEnvelope
	if e.Details == nil {
		e.Details = []nativeDetail{}
	}
	return json.Marshal(wire(e))
}

type nativeDetail struct {
	Value    any    `json:"value,omitempty"`
	Msg      string `json:"msg"`
	Param    string `json:"param"`
	Location string `json:"location"`
}

// nativeError writes err in the native envelope with the status its kind
// maps to. Internal causes are logged by the caller, never sent.
func nativeError(c *gin.Context, err error) {
	e := signer.AsError(err)
	status, code := http.StatusInternalServerError, "InternalServerError"
	switch e.Kind {
	case signer.KindInvalid:
		status, code = http.StatusBadRequest, "BadRequest"
	case signer.KindNotFound:
		status, code = http.StatusNotFound, "NotFound"
	case signer.KindConflict, signer.KindWrongState, signer.KindQuotaExceeded:
		status, code = http.StatusConflict, "Conflict"
	case signer.KindUnavailable:
		status, code = http.StatusServiceUnavailable, "ServiceUnavailable"
	case signer.KindUnauthenticated:
		status, code = http.StatusUnauthorized, "Unauthorized"
	case signer.KindForbidden:
		status, code = http.StatusForbidden, "Forbidden"
	}
	writeNative(c, status, code, e)
}

// writeNative writes e in the native envelope with status and code.
func writeNative(c *gin.Context, status int, code string, e *signer.Error) {
	retryAfter(c, e)
	env := nativeEnvelope{Code: code, Message: e.Msg}
	for _, f := range e.Fields {
		loc := f.Location
		if loc == "" {
			loc = "body"
		}
		env.Details = append(env.Details, nativeDetail{Value: f.Value, Msg: f.Msg, Param: f.Field, Location: loc})
	}
	keepCause(c, status, e)
	c.AbortWithStatusJSON(status, env)
}
