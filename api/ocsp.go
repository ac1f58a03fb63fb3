package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	ocspsvc "github.com/hsmca/hsmca/signer/ocsp"
)

// The OCSP responder (RFC 6960 with RFC 5019's lightweight profile):
// GET /ocsp/{base64 request} and POST /ocsp, no credential, limited per
// client address like the CRL routes. Every OCSP answer is HTTP 200 with
// an application/ocsp-response body, errors included (malformedRequest,
// unauthorized, tryLater, internalError); only HTTP-level refusals (429,
// 413, 415) answer otherwise. A GET answer every client gets alike
// carries the HTTP caching headers of RFC 5019 §6 (max-age up to its
// nextUpdate, ETag, Last-Modified, Expires) and answers If-None-Match and
// If-Modified-Since with 304; an answer signed for one request (a nonce,
// an unknown serial number), an error and every POST answer are no-store.
// The Huawei CCM OCSP switch of a CA is here too.

// OCSPAPI answers OCSP requests; signer/ocsp's Responder implements it.
type OCSPAPI interface {
	Answer(ctx context.Context, der []byte, client string) *ocspsvc.Answer
}

// pcaOCSP is the CCM OCSP switch (part of PCAAPI).
type pcaOCSP interface {
	SetOCSP(ctx context.Context, tenant, id string, on bool) error
}

// ocspFamily is the native family with DER bodies: what is refused
// before the handler (429, 413, 415) is refused in the native envelope;
// the handlers answer every OCSP request, failures included, in OCSP's
// own terms.
var ocspFamily = Family{Name: native.Name, WriteErr: nativeError, RawBody: true}

const (
	ocspRequestType  = "application/ocsp-request"
	ocspResponseType = "application/ocsp-response"
	// maxOCSPRequest bounds a request: one certificate's is about 100
	// bytes, with a nonce and a signature a few KiB.
	maxOCSPRequest = 16 << 10
)

// mountOCSP mounts the responder's two routes.
func (s *server) mountOCSP() {
	pub := Access{Public: true}
	s.handle(ocspFamily, "GET", "/ocsp/*request", pub, s.ocspGet)
	s.handle(ocspFamily, "POST", "/ocsp", pub, s.ocspPost)
}

func (s *server) ocspPost(c *gin.Context) {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != ocspRequestType {
		writeStatus(c, native, http.StatusUnsupportedMediaType, "UnsupportedMediaType",
			"an OCSP request is DER with Content-Type: "+ocspRequestType)
		return
	}
	der, err := io.ReadAll(io.LimitReader(c.Request.Body, maxOCSPRequest+1))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || len(der) > maxOCSPRequest {
		writeStatus(c, native, http.StatusRequestEntityTooLarge, "PayloadTooLarge",
			"an OCSP request is at most "+strconv.Itoa(maxOCSPRequest)+" bytes")
		return
	}
	if err != nil {
		der = nil // answered malformedRequest
	}
	s.ocspAnswer(c, der, false)
}

func (s *server) ocspGet(c *gin.Context) {
	// A '+' some client or proxy decoded as a space is put back.
	enc := strings.ReplaceAll(strings.TrimPrefix(c.Param("request"), "/"), " ", "+")
	var der []byte
	if len(enc) <= maxOCSPRequest*4/3+4 {
		der = decodeOCSPBase64(enc)
	}
	s.ocspAnswer(c, der, true)
}

// decodeOCSPBase64 reads the path of a GET request: base64 (RFC 5019
// §A.1, URL-decoded already), padded or not; base64url is accepted too.
// nil when it is neither.
func decodeOCSPBase64(s string) []byte {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b
		}
	}
	return nil
}

func (s *server) ocspAnswer(c *gin.Context, der []byte, get bool) {
	a := s.ocspAPI.Answer(c.Request.Context(), der, s.clientKey(c).String())
	h := c.Writer.Header()
	if a.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(max(1, int64((a.RetryAfter+time.Second-1)/time.Second)), 10))
	}
	if !get || !a.Shared() {
		h.Set("Cache-Control", "no-store")
		c.Data(http.StatusOK, ocspResponseType, a.DER)
		return
	}
	sum := sha256.Sum256(a.DER)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	maxAge := int64(a.NextUpdate.Sub(a.At) / time.Second)
	if maxAge < 0 {
		maxAge = 0
	}
	h.Set("Cache-Control", "public, max-age="+strconv.FormatInt(maxAge, 10)+", no-transform, must-revalidate")
	h.Set("ETag", etag)
	h.Set("Last-Modified", a.ThisUpdate.UTC().Format(http.TimeFormat))
	h.Set("Expires", a.NextUpdate.UTC().Format(http.TimeFormat))
	if notModified(c.Request, etag, a.ThisUpdate) {
		c.Status(http.StatusNotModified)
		return
	}
	c.Data(http.StatusOK, ocspResponseType, a.DER)
}

// notModified applies RFC 9110's conditional GET: If-None-Match when
// sent, else If-Modified-Since.
func notModified(r *http.Request, etag string, lastModified time.Time) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for _, t := range strings.Split(inm, ",") {
			t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
			if t == etag || t == "*" {
				return true
			}
		}
		return false
	}
	if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil {
			return !lastModified.Truncate(time.Second).After(t)
		}
	}
	return false
}

// pcaOCSPSwitch is CCM UpdateOcspSwitch: {"ocsp_switch": bool}, 204.
func (s *server) pcaOCSPSwitch(c *gin.Context) {
	var req struct {
		OCSPSwitch *bool `json:"ocsp_switch"`
	}
	if !pcaBody(c, &req, false) {
		return
	}
	if req.OCSPSwitch == nil {
		pcaError(c, pcaInvalid("ocsp_switch", nil, "is required"))
		return
	}
	if err := s.pcaAPI.SetOCSP(c.Request.Context(), tenantOf(c), c.Param("ca_id"), *req.OCSPSwitch); err != nil {
		pcaError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
