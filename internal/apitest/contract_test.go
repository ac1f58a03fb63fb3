package apitest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is a testing.TB that keeps what the contract check reports.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) reports() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errors...)
}

// TestContractCatchesDrift serves hand-written answers through the
// contract check: each drift from api/openapi.yaml a code change could
// bring is reported, and an exchange the document describes is not.
func TestContractCatchesDrift(t *testing.T) {
	const keyBody = `{"id":"k1","algorithm":"EC256","state":"enabled","owner":"key","created":"2026-01-02T03:04:05Z",` +
		`"publicKeyPem":"-----BEGIN PUBLIC KEY-----","publicKeyJwk":{"kty":"EC"},"signingAlgorithms":["ES256"]}`
	for _, c := range []struct {
		name, method, path, body string
		headers                  map[string]string
		status                   int
		answer                   string
		answerHeaders            map[string]string
		want                     string // a part of the report; "" for none
	}{
		{name: "described", method: "GET", path: "/healthz", status: 200, answer: `{"status":"ok"}`},
		{name: "response field added", method: "GET", path: "/healthz", status: 200,
			answer: `{"status":"ok","uptime":3}`, want: "does not describe"},
		{name: "response field renamed", method: "POST", path: "/v1/keys", body: `{"algorithm":"EC256"}`,
			headers: map[string]string{"Authorization": "Bearer t"}, status: 201,
			answer: strings.Replace(keyBody, `"state"`, `"status"`, 1), answerHeaders: map[string]string{"Location": "/v1/keys/k1"},
			want: "does not describe"},
		{name: "status not documented", method: "GET", path: "/healthz", status: 418, answer: `{}`, want: "418"},
		{name: "header missing", method: "POST", path: "/v1/keys", body: `{"algorithm":"EC256"}`,
			headers: map[string]string{"Authorization": "Bearer t"}, status: 201, answer: keyBody, want: "Location"},
		{name: "request field renamed and accepted", method: "POST", path: "/v1/keys", body: `{"algo":"EC256"}`,
			headers: map[string]string{"Authorization": "Bearer t"}, status: 201, answer: keyBody,
			answerHeaders: map[string]string{"Location": "/v1/keys/k1"}, want: "calls invalid"},
		{name: "request field renamed and refused", method: "POST", path: "/v1/keys", body: `{"algo":"EC256"}`,
			headers: map[string]string{"Authorization": "Bearer t"}, status: 400,
			answer: `{"code":"BadRequest","message":"algorithm: is required","details":[{"msg":"is required","param":"algorithm","location":"body"}]}`},
		{name: "no credential and accepted", method: "GET", path: "/v1/keys/k1", status: 200, answer: keyBody,
			want: "calls invalid"},
		{name: "wrong family envelope", method: "GET", path: "/v1/private-certificate-authorities/quotas",
			headers: map[string]string{"X-Auth-Token": "t"}, status: 401,
			answer: `{"code":"Unauthorized","message":"no"}`, want: "does not describe"},
		{name: "query out of bounds and accepted", method: "GET", path: "/v1/keys?limit=5000",
			headers: map[string]string{"Authorization": "Bearer t"}, status: 200, answer: `{"data":[]}`, want: "calls invalid"},
		{name: "undocumented route", method: "GET", path: "/v1/nothing", status: 404, answer: `whatever`},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			h := Contract(rec, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				buf := make([]byte, 512)
				_, _ = r.Body.Read(buf)
				for k, v := range c.answerHeaders {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.answer))
			}))
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			require.NoError(t, err)
			if c.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			got := rec.reports()
			if c.want == "" {
				assert.Empty(t, got)
				return
			}
			require.Len(t, got, 1)
			assert.Contains(t, got[0], c.want)
		})
	}
}
