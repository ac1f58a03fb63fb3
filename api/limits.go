package api

import (
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

// Answers that come before a family's handler reads anything: a query
// string too long (400, query.go), a body too large (413), a body that is
// not JSON (415) and a caller over its rate (429, ratelimit.go). Each is written in the route's family envelope, so
// a client of the public service reads them as it reads every other error.

// throttleCode is what the Huawei families answer when throttled: their
// public API gateway's code, which their clients already handle.
const throttleCode = "APIG.0308"

// writeStatus writes status and msg in family f's envelope. code is the
// native family's code; the Huawei families take codes of their own.
func writeStatus(c *gin.Context, f Family, status int, code, msg string) {
	if f.Name == acmeFamily.Name {
		p := statusBody(f, status, code, msg).(acmeProblem)
		writeProblem(c, status, p.Type, p.Detail)
		return
	}
	c.AbortWithStatusJSON(status, statusBody(f, status, code, msg))
}

// statusBody is the body writeStatus sends.
func statusBody(f Family, status int, code, msg string) any {
	switch f.Name {
	case pca.Name, apig.Name:
		hc := PCACodeBadParameter
		if f.Name == apig.Name {
			hc = APIGCodeBadValue
		}
		if status == http.StatusTooManyRequests {
			hc = throttleCode
		}
		return huaweiEnvelope{Code: hc, Msg: msg}
	case czertainly.Name:
		return gin.H{"message": msg}
	case oauth.Name:
		return oauthEnvelope{Error: oauthStatusCode(status), Description: msg}
	case acmeFamily.Name:
		typ := "malformed"
		if status == http.StatusTooManyRequests {
			typ = "rateLimited"
		}
		return acmeProblem{Type: "urn:ietf:params:acme:error:" + typ, Detail: msg, Status: status}
	default:
		return nativeEnvelope{Code: code, Message: msg}
	}
}

// admitBody refuses, before authentication reads the store, a body whose
// declared length is over the limit, and a body that declares a media type
// other than JSON. A body without Content-Type is read as JSON: minimal
// clients omit it, and the JSON decoders refuse what is not JSON anyway.
// A JSON type with parameters (charset) or a +json suffix is JSON.
func (s *server) admitBody(c *gin.Context, f Family) bool {
	if !admitQuery(c, f) {
		return false
	}
	r := c.Request
	if r.ContentLength > s.opts.MaxBodyBytes {
		writeStatus(c, f, http.StatusRequestEntityTooLarge, "PayloadTooLarge",
			"request body exceeds "+strconv.FormatInt(s.opts.MaxBodyBytes, 10)+" bytes")
		return false
	}
	hasBody := r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
	ct := r.Header.Get("Content-Type")
	if !hasBody || ct == "" || isJSONMediaType(ct) || (f.Name == oauth.Name && isFormMediaType(ct)) || f.RawBody {
		return true
	}
	writeStatus(c, f, http.StatusUnsupportedMediaType, "UnsupportedMediaType",
		"request bodies must be JSON (Content-Type: application/json)")
	return false
}

func isJSONMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// familyOfPath names the family whose URL space holds path, so that an
// unknown route under a family's prefix answers in that family's envelope.
func familyOfPath(path string) Family {
	switch {
	case strings.HasPrefix(path, "/v1/private-certificate-authorities"), strings.HasPrefix(path, "/v1/private-certificates"):
		return pca
	case strings.HasPrefix(path, "/v2/"):
		return apig
	case path == "/oauth/token" || strings.HasPrefix(path, "/oauth/"):
		return oauth
	case strings.HasPrefix(path, "/v1/admins"), strings.HasPrefix(path, "/v1/local/admins"):
		return czertainly
	case strings.HasPrefix(path, "/acme/"):
		return acmeFamily
	}
	return native
}
