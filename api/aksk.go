package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

// Huawei Cloud's AK/SK request signature, as its SDKs compute it: the
// client hashes a canonical form of the request (method, path, query,
// the headers it names, the body), signs that hash with the secret key
// under HMAC-SHA256 and sends
//
//	Authorization: SDK-HMAC-SHA256 Access=<key id>, SignedHeaders=<a;b>, Signature=<hex>
//	X-Sdk-Date: 20060102T150405Z
//
// The daemon rebuilds the same canonical request and checks the HMAC with
// the secret key the HSM unseals. There is no nonce: identical requests in
// the same second carry identical signatures, so a replay is bounded by the
// clock-skew window, as for every client of the service.

const (
	akskAlgorithm = "SDK-HMAC-SHA256"
	sdkDateHeader = "X-Sdk-Date"
	sdkDateFormat = "20060102T150405Z"
	// sdkContentHeader carries the body's hash, or UNSIGNED-PAYLOAD, when
	// the client sends it instead of letting the server hash the body.
	sdkContentHeader = "X-Sdk-Content-Sha256"
	unsignedPayload  = "UNSIGNED-PAYLOAD"
	// akskMaxSkew bounds the distance between X-Sdk-Date and the clock.
	akskMaxSkew = 15 * time.Minute
	// maxSignedHeaders bounds the work one Authorization header asks for.
	maxSignedHeaders = 32
)

// signedRequest is a parsed Authorization header of the AK/SK scheme.
type signedRequest struct {
	access    string
	headers   []string
	signature []byte
}

// isSignedRequest reports an Authorization header of Huawei's request
// signing schemes (SDK-HMAC-SHA256 and its variants).
func isSignedRequest(h string) bool {
	scheme, _, _ := strings.Cut(h, " ")
	return strings.HasPrefix(scheme, "SDK-") || strings.HasPrefix(scheme, "V11-")
}

var errSignature = &signer.Error{Kind: signer.KindUnauthenticated, Msg: "invalid access key or signature"}

func unauthenticated(msg string) error {
	return &signer.Error{Kind: signer.KindUnauthenticated, Msg: msg}
}

// parseSignedRequest reads the Authorization header. Its errors say what
// is malformed; they name no secret.
func parseSignedRequest(h string) (*signedRequest, error) {
	scheme, rest, _ := strings.Cut(h, " ")
	if scheme != akskAlgorithm {
		return nil, unauthenticated("unsupported signing algorithm " + strconv.Quote(clip(scheme, 32)) + "; sign with " + akskAlgorithm)
	}
	var sr signedRequest
	var sig string
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, unauthenticated("malformed Authorization header: want Access=, SignedHeaders=, Signature=")
		}
		switch k {
		case "Access":
			sr.access = v
		case "SignedHeaders":
			sr.headers = strings.Split(v, ";")
		case "Signature":
			sig = v
		default:
			return nil, unauthenticated("malformed Authorization header: unknown field " + strconv.Quote(clip(k, 32)))
		}
	}
	if sr.access == "" || len(sr.headers) == 0 || sig == "" {
		return nil, unauthenticated("malformed Authorization header: want Access=, SignedHeaders=, Signature=")
	}
	if len(sr.headers) > maxSignedHeaders {
		return nil, unauthenticated("malformed Authorization header: more than " + strconv.Itoa(maxSignedHeaders) + " signed headers")
	}
	for i, name := range sr.headers {
		if name == "" || name != strings.ToLower(name) || (i > 0 && sr.headers[i-1] >= name) {
			return nil, unauthenticated("malformed Authorization header: SignedHeaders must be lowercase names in ascending order")
		}
	}
	if !slices.Contains(sr.headers, strings.ToLower(sdkDateHeader)) {
		return nil, unauthenticated("the signature must cover the " + sdkDateHeader + " header")
	}
	raw, err := hex.DecodeString(sig)
	if err != nil || len(raw) != sha256.Size {
		return nil, errSignature
	}
	sr.signature = raw
	return &sr, nil
}

// signedAt checks X-Sdk-Date against the clock.
func signedAt(r *http.Request, now time.Time) (string, error) {
	v := r.Header.Get(sdkDateHeader)
	t, err := time.Parse(sdkDateFormat, v)
	if err != nil {
		return "", unauthenticated(sdkDateHeader + " must be a UTC time like 20060102T150405Z")
	}
	if d := now.Sub(t); d > akskMaxSkew || d < -akskMaxSkew {
		return "", unauthenticated("the request signature has expired or is not yet valid: " + sdkDateHeader +
			" is more than 15 minutes from the server's clock")
	}
	return v, nil
}

// signedBodyKey holds the buffer of a signed request's body, which the
// guard clears once the handler is done (an APIG body holds a private key).
const signedBodyKey = "hsmca.signed_body"

// readBody reads the request body (bounded by the configured limit) and
// puts it back for the handler.
func (s *server) readBody(c *gin.Context) ([]byte, error) {
	r := c.Request
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	b, err := readOwned(http.MaxBytesReader(c.Writer, r.Body, s.opts.MaxBodyBytes), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errBodyTooLarge
		}
		return nil, signer.E(signer.KindInvalid, "unreadable request body")
	}
	c.Set(signedBodyKey, b)
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}

// clearSignedBody wipes the buffer readBody kept.
func clearSignedBody(c *gin.Context) {
	if v, ok := c.Get(signedBodyKey); ok {
		clear(v.([]byte))
	}
}

// payloadHash is the body's hash as the client signed it.
func payloadHash(r *http.Request, body []byte) (string, error) {
	sum := sha256.Sum256(body)
	actual := hex.EncodeToString(sum[:])
	switch declared := r.Header.Get(sdkContentHeader); declared {
	case "":
		return actual, nil
	case unsignedPayload:
		// The SDKs send UNSIGNED-PAYLOAD for bodies that are not JSON;
		// every body this API takes is JSON, so only an empty one may go
		// unsigned.
		if len(body) > 0 {
			return "", unauthenticated("the signature must cover the request body: " + unsignedPayload + " is accepted only without a body")
		}
		return declared, nil
	default:
		if !strings.EqualFold(declared, actual) {
			return "", unauthenticated(sdkContentHeader + " does not match the request body")
		}
		return declared, nil
	}
}

// canonicalRequest rebuilds what the client hashed: method, path (each
// segment escaped, with a trailing slash), query (sorted, escaped),
// the signed headers (lowercase name, trimmed values, sorted), their
// names, and the payload hash.
func canonicalRequest(r *http.Request, signed []string, payload string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	segs := strings.Split(r.URL.Path, "/")
	for i, seg := range segs {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(sdkEscape(seg))
	}
	if !strings.HasSuffix(r.URL.Path, "/") {
		b.WriteByte('/')
	}
	b.WriteByte('\n')
	q := r.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	first := true
	for _, k := range keys {
		vals := slices.Clone(q[k])
		slices.Sort(vals)
		for _, v := range vals {
			if !first {
				b.WriteByte('&')
			}
			first = false
			b.WriteString(sdkEscape(k))
			b.WriteByte('=')
			b.WriteString(sdkEscape(v))
		}
	}
	b.WriteByte('\n')
	for _, name := range signed {
		var vals []string
		if name == "host" {
			vals = []string{r.Host}
		} else {
			vals = slices.Clone(r.Header.Values(name))
			slices.Sort(vals)
		}
		for _, v := range vals {
			b.WriteString(name)
			b.WriteByte(':')
			b.WriteString(strings.TrimSpace(v))
			b.WriteByte('\n')
		}
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payload)
	return b.String()
}

// sdkEscape percent-encodes every byte but unreserved ones (RFC 3986),
// upper-case hex, as the signing clients do.
func sdkEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// stringToSign is what the HMAC covers.
func stringToSign(date, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return akskAlgorithm + "\n" + date + "\n" + hex.EncodeToString(sum[:])
}

// authenticateSigned checks an AK/SK-signed request and returns its
// caller. Only the Huawei families take signed requests.
func (s *server) authenticateSigned(c *gin.Context, f Family, header string) (signer.Caller, error) {
	if f.Name != pca.Name && f.Name != apig.Name {
		return signer.Caller{}, unauthenticated("access-key signatures are accepted by the Huawei Cloud families only; send an API token")
	}
	sr, err := parseSignedRequest(header)
	if err != nil {
		return signer.Caller{}, err
	}
	date, err := signedAt(c.Request, time.Now())
	if err != nil {
		return signer.Caller{}, err
	}
	body, err := s.readBody(c)
	if err != nil {
		return signer.Caller{}, err
	}
	payload, err := payloadHash(c.Request, body)
	if err != nil {
		return signer.Caller{}, err
	}
	sts := []byte(stringToSign(date, canonicalRequest(c.Request, sr.headers, payload)))
	key, err := s.eng.AuthenticateAccessKey(c.Request.Context(), signer.AccessKeyCheck{
		ID: sr.access,
		Valid: func(secret []byte) bool {
			m := hmac.New(sha256.New, secret)
			m.Write(sts)
			return hmac.Equal(m.Sum(nil), sr.signature)
		},
	})
	if err != nil {
		return signer.Caller{}, err
	}
	// The SDKs name the project (basic credentials) or the domain (global
	// credentials) in a header; in hsmca both are the tenant.
	for _, h := range []string{"X-Project-Id", "X-Domain-Id"} {
		if v := c.Request.Header.Get(h); v != "" && v != key.Tenant {
			return signer.Caller{}, signer.E(signer.KindForbidden, "%s names another project than this access key's", h)
		}
	}
	return signer.Caller{Tenant: key.Tenant, Principal: "accesskey:" + key.ID, Roles: key.Roles}, nil
}
