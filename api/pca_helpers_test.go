package api_test

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
	pcasvc "github.com/hsmca/hsmca/signer/pca"
)

const (
	pcaCAs   = "/v1/private-certificate-authorities"
	pcaCerts = "/v1/private-certificates"
)

// pcaEnv is one daemon with a ca-operator token of tenant "t1".
type pcaEnv struct {
	*apitest.Env
	t   *testing.T
	tok string
}

func newPCA(t *testing.T, backend string, opts ...apitest.Options) *pcaEnv {
	env := apitest.New(t, backend, opts...)
	return &pcaEnv{Env: env, t: t, tok: env.NewToken("t1", "ca-operator")}
}

// requireStoredCerts checks that tenant t1 holds n certificates and
// uses n of its certificate quota.
func requireStoredCerts(t *testing.T, env *apitest.Env, n int) {
	t.Helper()
	got, err := env.Store.CountRecords(t.Context(), pcasvc.RecordCertificate, "t1")
	require.NoError(t, err)
	require.EqualValues(t, n, got, "only the answered certificates are stored")
	used, err := env.Store.QuotaUsage(t.Context(), "t1", pcasvc.QuotaCertificates)
	require.NoError(t, err)
	require.EqualValues(t, n, used)
}

// do calls with the CCM credential header.
func (p *pcaEnv) do(method, path string, body any) *apitest.Response {
	p.t.Helper()
	return p.Do(method, path, "", body, "X-Auth-Token", p.tok)
}

// ok asserts a success status and returns the decoded object (if any).
func (p *pcaEnv) ok(r *apitest.Response, status int) map[string]any {
	p.t.Helper()
	require.Equal(p.t, status, r.Status, "body: %s", r.Body)
	if len(r.Body) == 0 {
		return nil
	}
	return r.Map(p.t)
}

func pcaFullDN(cn string) map[string]any {
	return map[string]any{"common_name": cn, "country": "DE", "state": "Berlin", "locality": "Berlin",
		"organization": "hsmca tests", "organizational_unit": "PKI"}
}

func pcaYears(n int) map[string]any { return map[string]any{"type": "YEAR", "value": n} }

func (p *pcaEnv) createRoot(cn string, extra ...map[string]any) string {
	p.t.Helper()
	body := map[string]any{"type": "ROOT", "distinguished_name": pcaFullDN(cn), "key_algorithm": "EC256",
		"signature_algorithm": "SHA256", "validity": pcaYears(10)}
	for _, e := range extra {
		for k, v := range e {
			body[k] = v
		}
	}
	m := p.ok(p.do("POST", pcaCAs, body), http.StatusOK)
	return m["ca_id"].(string)
}

// createPending makes a PENDING subordinate (no issuer given).
func (p *pcaEnv) createPending(cn string, extra ...map[string]any) string {
	p.t.Helper()
	body := map[string]any{"type": "SUBORDINATE", "distinguished_name": pcaFullDN(cn), "key_algorithm": "EC256"}
	for _, e := range extra {
		for k, v := range e {
			body[k] = v
		}
	}
	m := p.ok(p.do("POST", pcaCAs, body), http.StatusOK)
	return m["ca_id"].(string)
}

// createSub makes a subordinate signed at once by issuer.
func (p *pcaEnv) createSub(cn, issuer string, pathLen int, extra ...map[string]any) string {
	p.t.Helper()
	return p.createPending(cn, append([]map[string]any{{"issuer_id": issuer, "signature_algorithm": "SHA256",
		"validity": pcaYears(5), "path_length": pathLen}}, extra...)...)
}

func (p *pcaEnv) showCA(id string) map[string]any {
	p.t.Helper()
	return p.ok(p.do("GET", pcaCAs+"/"+id, nil), http.StatusOK)
}

func (p *pcaEnv) issueLeaf(issuer, cn string, extra ...map[string]any) string {
	p.t.Helper()
	body := map[string]any{"issuer_id": issuer, "distinguished_name": map[string]any{"common_name": cn},
		"validity":                  map[string]any{"type": "DAY", "value": 30},
		"subject_alternative_names": []map[string]any{{"type": "DNS", "value": cn}}}
	for _, e := range extra {
		for k, v := range e {
			body[k] = v
		}
	}
	m := p.ok(p.do("POST", pcaCerts, body), http.StatusOK)
	return m["certificate_id"].(string)
}

func (p *pcaEnv) exportCA(id string) (cert, chain string) {
	p.t.Helper()
	m := p.ok(p.do("POST", pcaCAs+"/"+id+"/export", nil), http.StatusOK)
	return m["certificate"].(string), m["certificate_chain"].(string)
}

// pcaFail asserts the CCM envelope with a status and a code, and returns
// the message.
func pcaFail(t *testing.T, r *apitest.Response, status int, code string) string {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Body)
	m := r.Map(t)
	assert.Len(t, m, 2, "CCM errors are {error_code, error_msg}: %s", r.Body)
	assert.Equal(t, code, m["error_code"], "body: %s", r.Body)
	msg, _ := m["error_msg"].(string)
	assert.NotEmpty(t, msg)
	return msg
}

func pcaParseCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	require.NotNil(t, b, "no PEM in %q", s)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

func pcaWriteFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

// openssl runs the openssl binary and returns its combined output.
func pcaOpenSSL(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is required for this test: %v", err)
	}
	out, err := exec.Command("openssl", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
