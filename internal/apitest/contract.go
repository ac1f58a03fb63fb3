package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/hsmca/hsmca/api"
)

// The contract check: every exchange with an Env's server is held against
// api/openapi.yaml, so that the document and the code cannot drift apart
// unnoticed. For each request the document has an operation for:
//
//   - the answer must be one the operation documents: its status, its
//     headers and its body's schema (each family's error envelope
//     included);
//   - a request the document calls invalid (a missing required field, a
//     field it does not know, a value out of its bounds or enumeration, no
//     credential of the operation's schemes) must not succeed: a 2xx answer
//     to it fails the test. A valid request may still be refused (a CSR
//     that does not parse is well-formed JSON), so a refusal is never
//     checked against the request.
//
// Requests to paths or methods the document does not list (the hostile
// tests' unknown routes and methods) are passed on unchecked; the route
// table test keeps the document's paths equal to the router's.

// maxCapturedBody bounds the request body the check keeps; a larger one
// (only hostile tests send them, and they are refused) is not checked.
const maxCapturedBody = 4 << 20

// The document describes the CRLs, the CA certificates, OCSP requests and
// answers, and itself as strings (the raw body), so they are read as such
// rather than parsed.
func init() {
	openapi3filter.RegisterBodyDecoder("application/pkix-crl", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/pkix-cert", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/yaml", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/ocsp-request", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/ocsp-response", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/pem-certificate-chain", openapi3filter.FileBodyDecoder)
}

// contractDoc is api/openapi.yaml, loaded and validated once per test
// binary.
var contractDoc = sync.OnceValues(func() (routers.Router, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("api/openapi.yaml does not load: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("api/openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	// The document's server is the default listener; the tests' servers
	// listen on other ports.
	doc.Servers = nil
	return legacy.NewRouter(doc)
})

// ContractRouter returns the router of api/openapi.yaml's operations.
func ContractRouter(t testing.TB) routers.Router {
	t.Helper()
	r, err := contractDoc()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Contract wraps h so that every exchange is checked against
// api/openapi.yaml; a mismatch fails t (from the server's goroutine, with
// Errorf: the test goes on and reports every mismatch).
func Contract(t testing.TB, h http.Handler) http.Handler {
	c := &contract{t: t, router: ContractRouter(t)}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, params, err := c.router.FindRoute(r)
		if err != nil {
			h.ServeHTTP(w, r)
			return
		}
		var body *captureBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &captureBody{rc: r.Body}
			r.Body = body
		}
		rec := &recordWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		c.check(r, route, params, body, rec)
	})
}

type contract struct {
	t      testing.TB
	router routers.Router
}

func (c *contract) check(r *http.Request, route *routers.Route, params map[string]string, body *captureBody, rec *recordWriter) {
	ctx := context.Background()
	name := r.Method + " " + r.URL.Path
	opts := &openapi3filter.Options{
		MultiError:                        true,
		IncludeResponseStatus:             true,
		SkipSettingDefaults:               true,
		RejectWhenRequestBodyNotSpecified: true,
		AuthenticationFunc:                credentialPresent,
	}
	var raw []byte
	complete := true
	if body != nil {
		complete = body.drain()
		raw = body.buf.Bytes()
	}
	req := r.Clone(ctx)
	req.Body = io.NopCloser(bytes.NewReader(raw))
	req.ContentLength = int64(len(raw))
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}

	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.status,
		Header: rec.Header(), Options: opts}
	out.SetBodyBytes(rec.body.Bytes())
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		c.t.Errorf("openapi.yaml: %s (%s) answered %d, which the document does not describe:\n%v\nbody: %s",
			name, route.Operation.OperationID, rec.status, err, clipBody(rec.body.Bytes()))
	}
	logExchange(r, route, raw, rec)

	if rec.status < 200 || rec.status > 299 || !complete {
		return
	}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
		c.t.Errorf("openapi.yaml: %s (%s) answered %d to a request the document calls invalid:\n%v\nrequest body: %s",
			name, route.Operation.OperationID, rec.status, err, clipBody(raw))
	}
}

// credentialPresent is the check of an operation's security schemes: the
// request carries the credential the scheme names (whether it is valid is
// the server's business; a 2xx answer without any is what is caught).
func credentialPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	ss := in.SecurityScheme
	switch ss.Type {
	case "http":
		if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], ss.Scheme+" ") {
			return nil
		}
	case "apiKey":
		if ss.In == "header" && r.Header.Get(ss.Name) != "" {
			return nil
		}
		// The administrators' scheme: OpenAPI 3.0 has no mutual TLS
		// scheme, so the document marks the header scheme that a TLS
		// client certificate also satisfies.
		if ss.Extensions["x-hsmca-mutual-tls"] == true && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			return nil
		}
	}
	return errors.New("no credential of scheme " + in.SecuritySchemeName)
}

func clipBody(b []byte) string {
	if len(b) > 2048 {
		return string(b[:2048]) + "..."
	}
	return string(b)
}

// captureBody keeps what the handler reads of a request body.
type captureBody struct {
	rc       io.ReadCloser
	buf      bytes.Buffer
	overflow bool
	eof      bool
}

func (b *captureBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 && !b.overflow {
		if b.buf.Len()+n > maxCapturedBody {
			b.overflow = true
		} else {
			b.buf.Write(p[:n])
		}
	}
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *captureBody) Close() error { return b.rc.Close() }

// drain reads what the handler left of the body (a decoder stops at the
// end of the JSON value), and reports whether the whole body was kept.
func (b *captureBody) drain() bool {
	if !b.eof && !b.overflow {
		_, _ = io.Copy(io.Discard, io.LimitReader(b, maxCapturedBody+1))
	}
	return !b.overflow
}

// recordWriter passes an answer on and keeps its status and body.
type recordWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	body        bytes.Buffer
}

func (w *recordWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordWriter) Write(p []byte) (int, error) {
	w.wroteHeader = true
	w.body.Write(p)
	return w.ResponseWriter.Write(p)
}

func (w *recordWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *recordWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logExchange appends the exchange to the file named by
// HSMCA_CONTRACT_LOG, one JSON object a line: a way to see what the suite
// really sends and receives when writing the document.
func logExchange(r *http.Request, route *routers.Route, reqBody []byte, rec *recordWriter) {
	path := os.Getenv("HSMCA_CONTRACT_LOG")
	if path == "" {
		return
	}
	line, _ := json.Marshal(map[string]any{"op": route.Operation.OperationID, "method": r.Method,
		"path": r.URL.Path, "query": r.URL.RawQuery, "status": rec.status, "request": string(reqBody),
		"contentType": rec.Header().Get("Content-Type"), "response": string(rec.body.Bytes())})
	logMu.Lock()
	defer logMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(line, '\n'))
}

var logMu sync.Mutex
