package api_test

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/admins"
)

// checkFamilyEnvelope asserts that an error answer is in family's
// envelope, with a code that fits the status.
func checkFamilyEnvelope(t testing.TB, family string, status int, body []byte) {
	t.Helper()
	if family == "czertainly" && status == http.StatusUnprocessableEntity {
		var msgs []string
		require.NoError(t, json.Unmarshal(body, &msgs), "CZERTAINLY 422 is a JSON array of messages: %s", body)
		assert.NotEmpty(t, msgs)
		return
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal(body, &m), "%s %d body is not a JSON object: %s", family, status, body)
	switch family {
	case "native":
		want := map[int]string{400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
			405: "MethodNotAllowed", 409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
			429: "TooManyRequests", 501: "NotImplemented", 503: "ServiceUnavailable"}[status]
		if status == 404 && m["code"] == "NoCertificateRevocationList" {
			want = "NoCertificateRevocationList"
		}
		assert.Equal(t, want, m["code"], "native code for %d: %s", status, body)
		assert.NotEmpty(t, m["message"])
		assert.IsType(t, []any{}, m["details"], "details is always a list: %s", body)
	case "czertainly":
		assert.NotEmpty(t, m["message"], "%s", body)
		assert.Len(t, m, 1, "CZERTAINLY errors are {\"message\"} only: %s", body)
	case "pca", "apig":
		code, _ := m["error_code"].(string)
		prefix := map[string]string{"pca": "PCA.", "apig": "APIG."}[family]
		if status == http.StatusTooManyRequests {
			prefix = "APIG.0308"
		}
		assert.True(t, strings.HasPrefix(code, prefix), "%s error_code %q: %s", family, code, body)
		assert.NotEmpty(t, m["error_msg"])
		assert.Len(t, m, 2, "%s errors are {error_code, error_msg}: %s", family, body)
	case "oauth":
		code, _ := m["error"].(string)
		assert.Contains(t, []string{"invalid_request", "invalid_client", "unsupported_grant_type", "temporarily_unavailable", "server_error"}, code, "%s", body)
	case "acme":
		typ, _ := m["type"].(string)
		assert.True(t, strings.HasPrefix(typ, "urn:ietf:params:acme:error:"), "ACME problem type %q: %s", typ, body)
		assert.EqualValues(t, status, m["status"], "%s", body)
	default:
		t.Errorf("unknown family %q", family)
	}
}

// hostileKit holds the keys, certificates and CSRs the hostile requests
// are made of.
type hostileKit struct {
	tb                              testing.TB
	leafPEM, leafKeyPEM             string
	rsa1024Cert, rsa1024Key         string
	rsaHugeCert, rsaHugeKey         string
	p224Cert, p224Key               string
	dupExtCert, manySANCert         string
	csrGood, csrRSA1024, csrRSAHuge string
	csrP224, csrBadSig, csrDupExt   string
	csrManySAN                      string
}

func pemString(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func newHostileKit(tb testing.TB) *hostileKit {
	tb.Helper()
	k := &hostileKit{tb: tb}
	ec := k.ecKey(elliptic.P256())
	k.leafPEM = k.selfSigned(ec, nil, nil)
	k.leafKeyPEM = k.keyPEM(ec)

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024) //nolint:gosec // the weak key under test
	require.NoError(tb, err)
	k.rsa1024Cert, k.rsa1024Key = k.selfSigned(rsa1024, nil, nil), k.keyPEM(rsa1024)
	// A throwaway 8320-bit key: generating one takes the better part of a
	// minute, longer than every other case together.
	raw, err := os.ReadFile("testdata/rsa8320-throwaway.key")
	require.NoError(tb, err)
	b, _ := pem.Decode(raw)
	require.NotNil(tb, b)
	huge, err := x509.ParsePKCS1PrivateKey(b.Bytes)
	require.NoError(tb, err)
	k.rsaHugeCert, k.rsaHugeKey = k.selfSigned(huge, nil, nil), string(raw)
	p224 := k.ecKey(elliptic.P224())
	k.p224Cert, k.p224Key = k.selfSigned(p224, nil, nil), k.keyPEM(p224)

	dup := pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}, Value: []byte{0x05, 0x00}}
	k.dupExtCert = k.selfSigned(ec, []pkix.Extension{dup, dup}, nil)
	many := make([]string, 10000)
	for i := range many {
		many[i] = fmt.Sprintf("h%d.example", i)
	}
	k.manySANCert = k.selfSigned(ec, nil, many)

	k.csrGood = k.csr(ec, nil, nil)
	k.csrRSA1024 = k.csr(rsa1024, nil, nil)
	k.csrRSAHuge = k.csr(huge, nil, nil)
	k.csrP224 = k.csr(p224, nil, nil)
	k.csrDupExt = k.csr(ec, []pkix.Extension{dup, dup}, nil)
	k.csrManySAN = k.csr(ec, nil, many)
	// Flip one bit of the signature, the last bytes of the DER.
	b, _ = pem.Decode([]byte(k.csrGood))
	der := append([]byte(nil), b.Bytes...)
	der[len(der)-3] ^= 0x01
	k.csrBadSig = pemString("CERTIFICATE REQUEST", der)
	return k
}

func (k *hostileKit) ecKey(c elliptic.Curve) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(c, rand.Reader)
	require.NoError(k.tb, err)
	return key
}

func (k *hostileKit) keyPEM(key crypto.PrivateKey) string {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(k.tb, err)
	return pemString("PRIVATE KEY", der)
}

func (k *hostileKit) selfSigned(key crypto.Signer, ext []pkix.Extension, sans []string) string {
	k.tb.Helper()
	if sans == nil {
		sans = []string{"web.example"}
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	require.NoError(k.tb, err)
	tmpl := &x509.Certificate{SerialNumber: serial.Add(serial, big.NewInt(1)), Subject: pkix.Name{CommonName: "web.example", Organization: []string{"hostile"}},
		DNSNames: sans, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		ExtraExtensions: ext}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(k.tb, err)
	return pemString("CERTIFICATE", der)
}

func (k *hostileKit) csr(key crypto.Signer, ext []pkix.Extension, sans []string) string {
	k.tb.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "csr.example"}, DNSNames: sans, ExtraExtensions: ext}, key)
	require.NoError(k.tb, err)
	return pemString("CERTIFICATE REQUEST", der)
}

func (k *hostileKit) apigBody(name, cert, key string) string {
	raw, err := json.Marshal(map[string]any{"name": name, "cert_content": cert, "private_key": key})
	require.NoError(k.tb, err)
	return string(raw)
}

func b64DER(pemText string) string {
	b, _ := pem.Decode([]byte(pemText))
	return base64.StdEncoding.EncodeToString(b.Bytes)
}

// hostileEnv is one daemon in trusted-proxy mode with a tenant token
// that may call every tenant family and a superAdministrator.
type hostileEnv struct {
	*apitest.Env
	t      *testing.T
	tenant string
	token  string
	admin  string // X-APP-CERTIFICATE value
}

func newHostileEnv(t *testing.T, backend string, opts ...apitest.Options) *hostileEnv {
	var o apitest.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	configure := o.Configure
	o.Configure = func(ro *api.Options) {
		ro.TrustedProxy = true
		if configure != nil {
			configure(ro)
		}
	}
	env := apitest.New(t, backend, o)
	h := &hostileEnv{Env: env, t: t, tenant: "acme"}
	h.token = env.NewToken(h.tenant, signer.RoleAdmin)
	super := testpki.NewCA(t, "hostile admin CA").Issue(t, testpki.Options{CommonName: "root"})
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	_, err := env.Admins.Bootstrap(ctx, admins.Input{Username: "root", Certificate: super.B64()},
		admins.BootstrapOptions{ProfileOptional: true, Recover: true})
	require.NoError(t, err)
	h.admin = super.B64()
	return h
}

// request is one hostile call.
type request struct {
	method, path string
	body         io.Reader
	length       int64 // -1: chunked
	contentType  string
	admin        bool
}

func (h *hostileEnv) send(r request) *apitest.Response {
	h.t.Helper()
	req, err := http.NewRequest(r.method, h.Server.URL+r.path, r.body)
	require.NoError(h.t, err)
	if r.body != nil {
		req.ContentLength = r.length
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.admin {
		req.Header.Set("X-APP-CERTIFICATE", h.admin)
	} else {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	require.NoError(h.t, err, "%s %.200s", r.method, r.path)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(h.t, err)
	return &apitest.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

func (h *hostileEnv) call(method, path string, body any, admin bool) *apitest.Response {
	h.t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(h.t, err)
	if body == nil {
		return h.send(request{method: method, path: path, admin: admin})
	}
	return h.send(request{method: method, path: path, body: strings.NewReader(string(raw)), length: int64(len(raw)),
		contentType: "application/json", admin: admin})
}

// census is everything a request could have left behind: records as each
// family lists them, HSM objects and open intents.
func (h *hostileEnv) census() map[string]int {
	h.t.Helper()
	out := map[string]int{}
	count := func(name, path string, admin bool, field string) {
		r := h.call("GET", path, nil, admin)
		require.Equal(h.t, http.StatusOK, r.Status, "%s: %s", path, r.Body)
		if field == "" {
			var list []any
			r.JSON(h.t, &list)
			out[name] = len(list)
			return
		}
		m := r.Map(h.t)
		switch v := m[field].(type) {
		case []any:
			out[name] = len(v)
		case float64:
			out[name] = int(v)
		}
	}
	count("dts_cas", "/v1/ecosystems/certificates/ca?limit=1000", false, "data")
	count("dts_signers", "/v1/ecosystems/certificates/vical-signers?limit=1000", false, "data")
	count("keys", "/v1/keys?limit=1000", false, "data")
	count("pca_cas", pcaCAs+"?limit=1000", false, "total")
	count("pca_certs", pcaCerts+"?limit=1000", false, "total")
	count("apig", "/v2/"+h.tenant+"/apigw/certificates?limit=500", false, "total")
	count("admins", "/v1/admins", true, "")
	count("tokens", "/v1/tokens", true, "data")
	keys, err := h.HSM.List(context.Background())
	require.NoError(h.t, err)
	out["hsm_objects"] = len(keys)
	intents, err := h.Store.ListIntents(context.Background())
	require.NoError(h.t, err)
	out["intents"] = len(intents)
	return out
}

// hostile is one row of the table.
type hostile struct {
	name   string
	family string
	req    request
	status int
	code   string // when set, the family code the answer must carry
}

func jsonBody(method, path, body string) request {
	return request{method: method, path: path, body: strings.NewReader(body), length: int64(len(body)), contentType: "application/json"}
}

func (r request) as(admin bool) request { r.admin = admin; return r }
func (r request) typed(ct string) request {
	r.contentType = ct
	return r
}
func (r request) chunked() request { r.length = -1; return r }

func mustJSON(t testing.TB, v any) string {
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	return string(raw)
}

// TestHostileRequests sends requests no client should send and checks
// that each answers a clean 4xx in its family's envelope, never a 500,
// and leaves nothing behind: no record, no HSM object, no open intent.
func TestHostileRequests(t *testing.T) {
	h := newHostileEnv(t, "bolt")
	k := newHostileKit(t)
	apigPath := "/v2/" + h.tenant + "/apigw/certificates"

	// A root and a pending CA, so that requests naming an issuer or a CA
	// reach the checks of their bodies.
	root := h.call("POST", pcaCAs, map[string]any{"type": "ROOT", "distinguished_name": pcaFullDN("hostile root"),
		"key_algorithm": "EC256", "signature_algorithm": "SHA256", "validity": pcaYears(10)}, false)
	require.Equal(t, http.StatusOK, root.Status, "%s", root.Body)
	rootID := root.Map(t)["ca_id"].(string)
	pending := h.call("POST", pcaCAs, map[string]any{"type": "SUBORDINATE", "distinguished_name": pcaFullDN("hostile pending"),
		"key_algorithm": "EC256"}, false)
	require.Equal(t, http.StatusOK, pending.Status, "%s", pending.Body)
	pendingID := pending.Map(t)["ca_id"].(string)

	// Each family's create route, with a body that decodes but fails
	// validation: it shows which content types are accepted.
	creates := []struct {
		family string
		req    request
	}{
		{"native", jsonBody("POST", "/v1/ecosystems/certificates/ca", `{}`)},
		{"native", jsonBody("POST", "/v1/keys", `{}`)},
		{"native", jsonBody("POST", "/v1/tokens", `{}`).as(true)},
		{"pca", jsonBody("POST", pcaCAs, `{}`)},
		{"pca", jsonBody("POST", pcaCerts+"/csr/parse", `{}`)},
		{"apig", jsonBody("POST", apigPath, `{}`)},
		{"czertainly", jsonBody("POST", "/v1/admins", `{}`).as(true)},
	}
	invalidStatus := map[string]int{"native": 400, "pca": 400, "apig": 400, "czertainly": 422}
	big := `{"name":"` + strings.Repeat("a", 1<<20) + `"}`
	var rows []hostile
	for _, c := range creates {
		with := func(body string) request {
			r := c.req
			r.body, r.length = strings.NewReader(body), int64(len(body))
			return r
		}
		malformed := 400
		rows = append(rows,
			hostile{"over 1 MiB declared", c.family, with(big), 413, ""},
			hostile{"over 1 MiB chunked", c.family, with(big).chunked(), 413, ""},
			hostile{"malformed JSON", c.family, with(`{"a":`), malformed, ""},
			hostile{"trailing data", c.family, with(`{} {}`), malformed, ""},
			hostile{"100k nested arrays", c.family, with(strings.Repeat("[", 100000)), malformed, ""},
			hostile{"100k nested objects", c.family, with(strings.Repeat(`{"a":`, 100000)), malformed, ""},
			hostile{"text/plain", c.family, with(`{}`).typed("text/plain"), 415, ""},
			hostile{"form encoded", c.family, with(`{}`).typed("application/x-www-form-urlencoded"), 415, ""},
			hostile{"unparseable content type", c.family, with(`{}`).typed("application/json; ="), 415, ""},
			hostile{"JSON with charset accepted", c.family, with(`{}`).typed("application/json; charset=utf-8"), invalidStatus[c.family], ""},
			hostile{"+json accepted", c.family, with(`{}`).typed("application/merge-patch+json"), invalidStatus[c.family], ""},
			hostile{"no content type accepted", c.family, with(`{}`).typed(""), invalidStatus[c.family], ""},
		)
		if c.family != "czertainly" || !strings.HasSuffix(c.req.path, "/admins") {
			rows = append(rows, hostile{"array body", c.family, with(`[]`), invalidStatus[c.family], ""})
		}
	}
	// CZERTAINLY reads malformed JSON as 400, and field failures as 422.
	for i := range rows {
		if rows[i].family == "czertainly" && rows[i].name == "array body" {
			rows[i].status = 400
		}
	}

	apig := func(name, cert, key string) request { return jsonBody("POST", apigPath, k.apigBody(name, cert, key)) }
	csrParse := func(csr string) request {
		return jsonBody("POST", pcaCerts+"/csr/parse", mustJSON(t, map[string]any{"csr": csr}))
	}
	csrIssue := func(csr string) request {
		return jsonBody("POST", pcaCerts+"/csr", mustJSON(t, map[string]any{"issuer_id": rootID, "csr": csr,
			"validity": map[string]any{"type": "DAY", "value": 30}}))
	}
	adminCreate := func(cert string) request {
		return jsonBody("POST", "/v1/admins", mustJSON(t, map[string]any{"adminCertificate": b64DER(cert),
			"username": "hostile", "name": "Host", "surname": "Ile", "email": "h@example.com", "role": "administrator"})).as(true)
	}
	many := make([]map[string]any, 10000)
	for i := range many {
		many[i] = map[string]any{"type": "DNS", "value": fmt.Sprintf("h%d.example", i)}
	}
	dn := map[string]any{"common_name": "leaf.example"}
	const maxInt64 = "9223372036854775807"
	rows = append(rows,
		// Key sizes and curves.
		hostile{"APIG RSA-1024 key", "apig", apig("rsa_small", k.rsa1024Cert, k.rsa1024Key), 400, api.APIGCodeBadValue},
		hostile{"APIG RSA-8320 key", "apig", apig("rsa_huge", k.rsaHugeCert, k.rsaHugeKey), 400, api.APIGCodeBadValue},
		hostile{"APIG P-224 key", "apig", apig("p224_key", k.p224Cert, k.p224Key), 400, api.APIGCodeBadValue},
		hostile{"PCA parse RSA-1024 CSR", "pca", csrParse(k.csrRSA1024), 400, api.PCACodeBadKeyAlg},
		hostile{"PCA parse RSA-8320 CSR", "pca", csrParse(k.csrRSAHuge), 400, api.PCACodeBadKeyAlg},
		hostile{"PCA parse P-224 CSR", "pca", csrParse(k.csrP224), 400, api.PCACodeBadKeyAlg},
		hostile{"PCA issue RSA-1024 CSR", "pca", csrIssue(k.csrRSA1024), 400, api.PCACodeBadKeyAlg},
		hostile{"PCA issue RSA-8320 CSR", "pca", csrIssue(k.csrRSAHuge), 400, api.PCACodeBadKeyAlg},
		hostile{"PCA issue P-224 CSR", "pca", csrIssue(k.csrP224), 400, api.PCACodeBadKeyAlg},
		hostile{"PCA CA on EC224", "pca", jsonBody("POST", pcaCAs, mustJSON(t, map[string]any{"type": "ROOT",
			"distinguished_name": pcaFullDN("x"), "key_algorithm": "EC224", "signature_algorithm": "SHA256", "validity": pcaYears(1)})), 400, api.PCACodeBadKeyAlg},
		hostile{"PCA leaf on RSA1024", "pca", jsonBody("POST", pcaCerts, mustJSON(t, map[string]any{"issuer_id": rootID,
			"key_algorithm": "RSA1024", "distinguished_name": dn, "validity": map[string]any{"type": "DAY", "value": 1}})), 400, api.PCACodeBadKeyAlg},
		hostile{"keys RSA1024", "native", jsonBody("POST", "/v1/keys", `{"algorithm":"RSA1024"}`), 400, ""},
		hostile{"keys RSA16384", "native", jsonBody("POST", "/v1/keys", `{"algorithm":"RSA16384"}`), 400, ""},
		hostile{"keys EC224", "native", jsonBody("POST", "/v1/keys", `{"algorithm":"EC224"}`), 400, ""},

		// Signatures and duplicate extensions.
		hostile{"PCA parse CSR with a bad signature", "pca", csrParse(k.csrBadSig), 400, api.PCACodeBadCSR},
		hostile{"PCA issue CSR with a bad signature", "pca", csrIssue(k.csrBadSig), 400, api.PCACodeBadCSR},
		hostile{"PCA parse CSR with duplicate extensions", "pca", csrParse(k.csrDupExt), 400, api.PCACodeBadCSR},
		hostile{"PCA issue CSR with duplicate extensions", "pca", csrIssue(k.csrDupExt), 400, api.PCACodeBadCSR},
		hostile{"PCA import certificate with duplicate extensions", "pca", jsonBody("POST", pcaCAs+"/"+pendingID+"/import",
			mustJSON(t, map[string]any{"certificate": k.dupExtCert})), 400, api.PCACodeBadCert},
		hostile{"APIG certificate with duplicate extensions", "apig", apig("dup_ext", k.dupExtCert, k.leafKeyPEM), 400, api.APIGCodeUnparseable},
		hostile{"DTS certificate with duplicate extensions", "native", jsonBody("POST", "/v1/ecosystems/certificates/ca",
			mustJSON(t, map[string]any{"certificatePem": k.dupExtCert})), 400, ""},
		hostile{"admin certificate with duplicate extensions", "czertainly", adminCreate(k.dupExtCert), 422, ""},

		// 10,000 SANs.
		hostile{"PCA issue with 10,000 SANs", "pca", jsonBody("POST", pcaCerts, mustJSON(t, map[string]any{"issuer_id": rootID,
			"distinguished_name": dn, "validity": map[string]any{"type": "DAY", "value": 1}, "subject_alternative_names": many})), 400, ""},
		hostile{"PCA issue CSR with 10,000 SANs", "pca", csrIssue(k.csrManySAN), 400, ""},
		hostile{"APIG certificate with 10,000 SANs", "apig", apig("many_sans", k.manySANCert, k.leafKeyPEM), 400, api.APIGCodeBadValue},

		// Validity overflow.
		hostile{"PCA root validity max int64 years", "pca", jsonBody("POST", pcaCAs, `{"type":"ROOT","key_algorithm":"EC256","signature_algorithm":"SHA256",`+
			`"distinguished_name":`+mustJSON(t, pcaFullDN("x"))+`,"validity":{"type":"YEAR","value":`+maxInt64+`}}`), 400, api.PCACodeBadValidity},
		hostile{"PCA root validity 1e300", "pca", jsonBody("POST", pcaCAs, `{"type":"ROOT","key_algorithm":"EC256","signature_algorithm":"SHA256",`+
			`"distinguished_name":`+mustJSON(t, pcaFullDN("x"))+`,"validity":{"type":"DAY","value":1e300}}`), 400, ""},
		hostile{"PCA root validity negative", "pca", jsonBody("POST", pcaCAs, `{"type":"ROOT","key_algorithm":"EC256","signature_algorithm":"SHA256",`+
			`"distinguished_name":`+mustJSON(t, pcaFullDN("x"))+`,"validity":{"type":"HOUR","value":-`+maxInt64+`}}`), 400, api.PCACodeBadValidity},
		hostile{"PCA root starting in year 10000", "pca", jsonBody("POST", pcaCAs, `{"type":"ROOT","key_algorithm":"EC256","signature_algorithm":"SHA256",`+
			`"distinguished_name":`+mustJSON(t, pcaFullDN("x"))+`,"validity":{"type":"DAY","value":1,"start_from":253402300800000}}`), 400, api.PCACodeBadValidity},
		hostile{"PCA root starting at max int64 ms", "pca", jsonBody("POST", pcaCAs, `{"type":"ROOT","key_algorithm":"EC256","signature_algorithm":"SHA256",`+
			`"distinguished_name":`+mustJSON(t, pcaFullDN("x"))+`,"validity":{"type":"DAY","value":1,"start_from":`+maxInt64+`}}`), 400, api.PCACodeBadValidity},
		hostile{"PCA leaf validity max int64 days", "pca", jsonBody("POST", pcaCerts, mustJSON(t, map[string]any{"issuer_id": rootID,
			"distinguished_name": dn, "validity": map[string]any{"type": "DAY", "value": json.Number(maxInt64)}})), 400, api.PCACodeBadValidity},
		hostile{"PCA activate validity max int64 months", "pca", jsonBody("POST", pcaCAs+"/"+pendingID+"/activate", mustJSON(t, map[string]any{
			"issuer_id": rootID, "signature_algorithm": "SHA256", "validity": map[string]any{"type": "MONTH", "value": json.Number(maxInt64)}})), 400, api.PCACodeBadValidity},
		hostile{"PCA CRL valid_days max int64", "pca", jsonBody("POST", pcaCAs+"/"+rootID+"/crl/enable", `{"valid_days":`+maxInt64+`}`), 400, ""},
		hostile{"PCA delete pending_days overflow", "pca", request{method: "DELETE", path: pcaCAs + "/" + pendingID + "?pending_days=99999999999999999999"}, 400, ""},
		hostile{"DTS notAfter in 9999", "native", jsonBody("POST", "/v1/ecosystems/certificates/ca", `{"organisationName":"O","notAfter":"9999-12-31T23:59:59Z"}`), 400, ""},
		hostile{"DTS notAfter in 10000", "native", jsonBody("POST", "/v1/ecosystems/certificates/ca", `{"organisationName":"O","notAfter":"10000-01-01T00:00:00Z"}`), 400, ""},
		hostile{"DTS notBefore in 9999", "native", jsonBody("POST", "/v1/ecosystems/certificates/ca", `{"organisationName":"O","notBefore":"9999-12-31T23:59:59Z"}`), 400, ""},
		hostile{"token expiring in 10000", "native", jsonBody("POST", "/v1/tokens", `{"tenant":"acme","roles":["admin"],"expires_at":"10000-01-01T00:00:00Z"}`).as(true), 400, ""},
		hostile{"events since year 10000", "native", request{method: "GET", path: "/v1/events?since=10000-01-01T00:00:00Z"}, 400, ""},
		hostile{"DTS list limit overflow", "native", request{method: "GET", path: "/v1/ecosystems/certificates/ca?limit=99999999999999999999"}, 400, ""},
		hostile{"keys list limit overflow", "native", request{method: "GET", path: "/v1/keys?limit=99999999999999999999"}, 400, ""},
		hostile{"PCA list offset overflow", "pca", request{method: "GET", path: pcaCAs + "?offset=99999999999999999999"}, 400, ""},
		hostile{"APIG list offset overflow", "apig", request{method: "GET", path: apigPath + "?offset=99999999999999999999"}, 400, ""},
	)

	before := h.census()
	for _, row := range rows {
		t.Run(row.family+"/"+row.req.method+" "+trimPath(row.req.path)+"/"+row.name, func(t *testing.T) {
			r := h.send(row.req)
			require.Equal(t, row.status, r.Status, "body: %.600s", r.Body)
			checkFamilyEnvelope(t, row.family, r.Status, r.Body)
			if row.code != "" {
				assert.Equal(t, row.code, r.Map(t)["error_code"], "%s", r.Body)
			}
			if after := h.census(); !assert.Equal(t, before, after, "the refused request left something behind") {
				before = after // one leak is reported once, not by every later row
			}
		})
	}
	assert.NotContains(t, h.Logs.String(), "panic", "no request may panic")
}

func trimPath(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if len(p) > 60 {
		p = p[:60]
	}
	return p
}

// TestHostileIDs sends ids that are not ids on every route with a path
// parameter: each answers a 4xx in its family's envelope and nothing
// changes.
func TestHostileIDs(t *testing.T) {
	h := newHostileEnv(t, "bolt")
	ids := map[string]string{
		"traversal":       "..%2f..%2f..%2fetc%2fpasswd",
		"dot-dot":         "..",
		"encoded dot-dot": "%2e%2e",
		"10k chars":       strings.Repeat("a", 10000),
		"40k chars":       strings.Repeat("b", 40000),
		"non-UTF-8":       "%ff%fe%fd",
		"NUL":             "id%00x",
		"control chars":   "%0d%0aSet-Cookie:%20x",
		"braces":          "%7Bacme%7D:rec",
		"glob":            "*",
	}
	allowed := map[string][]int{
		"native":     {400, 404},
		"pca":        {400},
		"apig":       {400, 403, 404},
		"czertainly": {400, 404, 422},
		"acme":       {400, 404, 415},
	}
	before := h.census()
	for _, ri := range api.Routes(api.Options{Engine: h.Engine}) {
		if !strings.Contains(ri.Path, "/:") {
			continue
		}
		for name, id := range ids {
			params := strings.Count(ri.Path, "/:")
			for which := 0; which < params; which++ {
				path := fillHostile(ri.Path, h.tenant, which, id)
				t.Run(ri.Method+" "+ri.Path+"/"+name+fmt.Sprint(which), func(t *testing.T) {
					req := request{method: ri.Method, path: path, admin: len(ri.Access.TenantRoles) == 0}
					if ri.Method == "POST" || ri.Method == "PUT" {
						req = jsonBody(ri.Method, path, `{}`).as(req.admin)
					}
					r := h.send(req)
					assert.Contains(t, allowed[ri.Family], r.Status, "body: %.300s", r.Body)
					if ri.Method != "HEAD" { // an answer to HEAD has no body
						checkFamilyEnvelope(t, ri.Family, r.Status, r.Body)
					}
				})
			}
		}
	}
	assert.Equal(t, before, h.census(), "a request with a hostile id changed something")
	assert.NotContains(t, h.Logs.String(), "panic")
}

// fillHostile fills the which-th parameter of a route with id and the
// others with plausible values (the caller's tenant for project_id).
func fillHostile(path, tenant string, which int, id string) string {
	parts := strings.Split(path, "/")
	n := 0
	for i, p := range parts {
		if !strings.HasPrefix(p, ":") {
			continue
		}
		switch {
		case n == which:
			parts[i] = id
		case p == ":project_id":
			parts[i] = tenant
		default:
			parts[i] = "5b6f2c1e-3a4d-4e8f-9a0b-1c2d3e4f5a6b"
		}
		n++
	}
	return strings.Join(parts, "/")
}

// TestHostileCSRSubjects sends CSRs whose subjects or names were signed as
// they came (NUL and right-to-left override in the common name, 1,000
// characters, an empty subject with no SAN, wildcards under public
// suffixes): issuance and parsing answer 400 in the PCA envelope and
// nothing is issued.
func TestHostileCSRSubjects(t *testing.T) {
	h := newHostileEnv(t, "bolt")
	root := h.call("POST", pcaCAs, map[string]any{"type": "ROOT", "distinguished_name": pcaFullDN("subject root"),
		"key_algorithm": "EC256", "signature_algorithm": "SHA256", "validity": pcaYears(10)}, false)
	require.Equal(t, http.StatusOK, root.Status, "%s", root.Body)
	rootID := root.Map(t)["ca_id"].(string)
	cases := hostileSubjectCSRs(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	for _, dns := range []string{"*.com", "*.co.uk", "*.github.io"} {
		cases = append(cases, struct{ name, csr, field string }{"SAN " + dns, csrOf(t, ec, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: "svc"}, DNSNames: []string{dns}}), "csr.subject_alternative_names[0].value"})
	}
	before := h.census()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.call("POST", pcaCerts+"/csr", map[string]any{"issuer_id": rootID, "csr": tc.csr,
				"validity": map[string]any{"type": "DAY", "value": 30}}, false)
			require.Equal(t, http.StatusBadRequest, r.Status, "body: %.600s", r.Body)
			checkFamilyEnvelope(t, "pca", r.Status, r.Body)
			assert.True(t, strings.HasPrefix(r.Map(t)["error_msg"].(string), tc.field+": "), "%s", r.Body)
			assert.Equal(t, before, h.census(), "a refused CSR left something behind")
		})
	}
	assert.NotContains(t, h.Logs.String(), "\u202e", "no hostile subject reaches the log")
	assert.NotContains(t, h.Logs.String(), "panic")
}

// httpSeries counts the series of the hsmca_http_* families.
func httpSeries(t *testing.T, m *metrics.Metrics) int {
	t.Helper()
	mfs, err := m.Registry.Gather()
	require.NoError(t, err)
	n := 0
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "hsmca_http_") {
			n += len(mf.GetMetric())
		}
	}
	return n
}

// maxLogLine bounds every log line a request can cause.
const maxLogLine = 2048

func longestLine(s string) (int, string) {
	n, which := 0, ""
	for _, l := range strings.Split(s, "\n") {
		if len(l) > n {
			n, which = len(l), l
		}
	}
	return n, which
}

// TestHostileMethodFlood: anonymous requests with invented methods (16
// bytes to 60 KB; this in-process server lets up to 1 MiB of header
// through, so each reaches the handler) and invented paths, to every
// family: each answers 501 in the family's envelope, none adds an
// hsmca_http_* series after the first, and no log line grows with them.
func TestHostileMethodFlood(t *testing.T) {
	env := apitest.New(t, "bolt")
	prefixes := []struct{ path, family string }{
		{"/v1/nothing", "native"}, {"/v1/keys", "native"}, {"/v1/private-certificate-authorities", "pca"},
		{"/v2/acme/apigw/certificates", "apig"}, {"/v1/admins", "czertainly"}, {"/healthz", "native"},
	}
	send := func(method, path string) *apitest.Response {
		req, err := http.NewRequest(method, env.Server.URL+path, nil)
		require.NoError(t, err)
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		require.NoError(t, err, "%.40s %s", method, path)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return &apitest.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	}
	// The first of each kind: an invented method, an unknown path.
	require.Equal(t, http.StatusNotImplemented, send("FIRSTMETHODXXXXX", "/v1/first").Status)
	require.Equal(t, http.StatusNotFound, send("GET", "/v1/first").Status)
	before := httpSeries(t, env.Metrics)

	methods := []string{}
	for i := 0; i < 300; i++ {
		methods = append(methods, fmt.Sprintf("M%015d", i)) // 16 bytes
	}
	for _, size := range []int{4 << 10, 8 << 10, 16 << 10, 32 << 10, 60 << 10, 60 << 10} {
		methods = append(methods, strings.Repeat("Q", size-4)+fmt.Sprintf("%04d", size%9999))
	}
	for i, m := range methods {
		p := prefixes[i%len(prefixes)]
		path := fmt.Sprintf("%s/flood-%d", p.path, i)
		r := send(m, path)
		require.Equal(t, http.StatusNotImplemented, r.Status, "%.40s %s", m, path)
		checkFamilyEnvelope(t, p.family, r.Status, r.Body)
		r = send("GET", fmt.Sprintf("/v1/unknown-%d/%s", i, strings.Repeat("p", i)))
		require.Equal(t, http.StatusNotFound, r.Status)
	}
	assert.Equal(t, before, httpSeries(t, env.Metrics), "invented methods and paths added hsmca_http_* series")
	scrape := env.Do("GET", "/metrics", "", nil)
	assert.NotContains(t, string(scrape.Body), "M000000000000042")
	assert.NotContains(t, string(scrape.Body), "QQQQ")

	logs := env.Logs.String()
	n, line := longestLine(logs)
	assert.LessOrEqual(t, n, maxLogLine, "log line of %d bytes: %.300s", n, line)
	assert.NotContains(t, logs, strings.Repeat("Q", 100), "a long method is logged only by its first bytes")
	assert.Contains(t, logs, `"method":"OTHER"`)
}

// startEdgeDaemon runs a whole daemon as configured by default (header
// limit, TLS off) on a loopback port, logging into logs.
func startEdgeDaemon(t *testing.T, logs io.Writer) *daemon.Daemon {
	t.Helper()
	tok := testenv.NewToken(t)
	for _, e := range config.Env {
		if _, ok := os.LookupEnv(e.Name); ok {
			t.Setenv(e.Name, "")
			os.Unsetenv(e.Name)
		}
	}
	t.Setenv("HSMCA_DATA_DIR", t.TempDir())
	t.Setenv("HSMCA_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("HSMCA_PKCS11_MODULE", tok.Module)
	t.Setenv("HSMCA_TOKEN_LABEL", tok.Label)
	t.Setenv("HSMCA_PIN_FILE", tok.PINFile)
	cfg, err := config.Load("")
	require.NoError(t, err)
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Shutdown(context.Background()) })
	return d
}

// rawExchange writes req on a fresh TCP connection and returns the status
// line of the answer.
func rawExchange(t *testing.T, addr string, req []byte) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	// The server may answer before it has read everything: write in the
	// background, read the answer here.
	go func() { _, _ = conn.Write(req) }()
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSpace(line)
}

// TestHostileHeaderSize: against the daemon's own listener, a request
// line or headers past http.max_header_bytes answer 431 and a method that
// is not a token 400, before any handler runs; a method under the limit
// that is not a known one answers 501. None adds a series or a long log
// line.
func TestHostileHeaderSize(t *testing.T) {
	logs := &apitest.LogBuffer{}
	d := startEdgeDaemon(t, logs)
	addr := d.Addr()
	metricsOf := func() int {
		resp, err := http.Get("http://" + addr + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		n := 0
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(l, "hsmca_http_") {
				n++
			}
		}
		return n
	}
	require.Equal(t, "HTTP/1.1 501 Not Implemented", rawExchange(t, addr, []byte("SEED /x HTTP/1.1\r\nHost: h\r\n\r\n")))
	require.Equal(t, "HTTP/1.1 200 OK", rawExchange(t, addr, []byte("GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")))
	metricsOf()
	before := metricsOf()

	for name, tc := range map[string]struct {
		req  string
		want string
	}{
		"60 KB method": {strings.Repeat("M", 60<<10) + " / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
		"32 KB method": {strings.Repeat("M", 32<<10) + " / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
		"60 KB path":   {"GET /" + strings.Repeat("p", 60<<10) + " HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
		"one 24 KB header": {"GET /healthz HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 24<<10) + "\r\n\r\n",
			"HTTP/1.1 431 Request Header Fields Too Large"},
		"many headers": {"GET /healthz HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X-Many: "+strings.Repeat("m", 100)+"\r\n", 300) + "\r\n",
			"HTTP/1.1 431 Request Header Fields Too Large"},
		"method not a token": {"BR(EW / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		"8 KB method":        {strings.Repeat("K", 8<<10) + " /v1/keys HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 501 Not Implemented"},
		"12 KB header, under the limit": {"GET /healthz HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 12<<10) + "\r\n\r\n",
			"HTTP/1.1 200 OK"},
	} {
		assert.Equal(t, tc.want, rawExchange(t, addr, []byte(tc.req)), name)
	}
	assert.Equal(t, before, metricsOf(), "oversized requests added hsmca_http_* series")
	n, line := longestLine(logs.String())
	assert.LessOrEqual(t, n, maxLogLine, "log line of %d bytes: %.300s", n, line)
	assert.NotContains(t, logs.String(), strings.Repeat("K", 100))
}
