package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/admins"
	"github.com/hsmca/hsmca/signer/dts"
	"github.com/hsmca/hsmca/store/boltstore"
)

// The JSON bodies of every family go through their decoder and the
// engine's validation. These targets run the whole router in-process
// (no socket) over a bolt file and an engine without an HSM: whatever
// passes validation then stops at a clean 503, so the fuzzer spends its
// time in the parsers and checks rather than in key generation. The
// hostile-request table (hostile_test.go) covers the same ground with the
// HSM present.

const fuzzTenant = "fuzz"

type fuzzRouter struct {
	h     *api.Handler
	token string
	admin string // X-APP-CERTIFICATE value of a superAdministrator
}

func newFuzzRouter(tb testing.TB) *fuzzRouter {
	tb.Helper()
	st, err := boltstore.Open(filepath.Join(tb.TempDir(), "hsmca.db"), boltstore.Options{})
	require.NoError(tb, err)
	log := slog.New(slog.DiscardHandler)
	eng := signer.New(signer.Options{Store: st, Logger: log})
	tb.Cleanup(func() {
		eng.Close()
		st.Close()
	})
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:fuzz"})
	secret, _, err := eng.CreateToken(ctx, fuzzTenant, []string{signer.RoleAdmin}, nil)
	require.NoError(tb, err)
	ca := testpki.NewCA(tb, "fuzz admin CA")
	super := ca.Issue(tb, testpki.Options{CommonName: "root"})
	_, err = admins.New(eng).Bootstrap(ctx, admins.Input{Username: "root", Certificate: super.B64()},
		admins.BootstrapOptions{ProfileOptional: true, Recover: true})
	require.NoError(tb, err)
	// With an issuer alternative name, a valid DTS root body goes on to
	// the HSM (and its clean 503) like the other families' bodies.
	h := api.Router(api.Options{Engine: eng, Logger: log, TrustedProxy: true,
		DTS: dts.New(eng, dts.IssuerAltName("https://fuzz.example"))})
	return &fuzzRouter{h: h, token: secret, admin: super.B64()}
}

// fuzzRoute is one body-taking route and its family.
type fuzzRoute struct {
	family, method, path string
	admin                bool // platform route: authenticate with the admin certificate
}

const fuzzID = "5b6f2c1e-3a4d-4e8f-9a0b-1c2d3e4f5a6b"

func (fr *fuzzRouter) serve(t *testing.T, r fuzzRoute, body []byte, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(r.method, r.path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if r.admin {
		req.Header.Set("X-APP-CERTIFICATE", fr.admin)
	} else {
		req.Header.Set("Authorization", "Bearer "+fr.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	fr.h.ServeHTTP(w, req)
	return w
}

// fuzzBodies runs one family's body-taking routes: route picks one, body
// is sent as is. No answer may be a 500 (a panic answers 500 through the
// recovery middleware), and every error carries the family's envelope.
func fuzzBodies(f *testing.F, routes []fuzzRoute, seeds []string) {
	fr := newFuzzRouter(f)
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	f.Add(uint8(0), []byte(strings.Repeat("[", 10000)))
	f.Add(uint8(1), []byte(`{"a":`+strings.Repeat(`{"a":`, 5000)))
	f.Fuzz(func(t *testing.T, pick uint8, body []byte) {
		r := routes[int(pick)%len(routes)]
		w := fr.serve(t, r, body)
		require.NotEqual(t, http.StatusInternalServerError, w.Code, "%s %s answered 500: %s", r.method, r.path, w.Body.Bytes())
		if w.Code >= 400 {
			checkFamilyEnvelope(t, r.family, w.Code, w.Body.Bytes())
		}
	})
}

func FuzzDTSBody(f *testing.F) {
	const base = "/v1/ecosystems/certificates"
	fuzzBodies(f, []fuzzRoute{
		{"native", "POST", base + "/ca", false},
		{"native", "PUT", base + "/ca/" + fuzzID, false},
		{"native", "POST", base + "/vical-signers", false},
		{"native", "PUT", base + "/vical-signers/" + fuzzID, false},
		{"native", "POST", base + "/vical-signers/" + fuzzID + "/sign", false},
		{"native", "POST", base + "/ca/" + fuzzID + "/intermediate", false},
		{"native", "PUT", base + "/ca/" + fuzzID + "/intermediate/" + fuzzID, false},
	}, []string{
		`{"organisationName":"Org","commonName":"CN","country":"AU","notBefore":"2030-01-01T00:00:00Z","notAfter":"2040-01-01T00:00:00Z"}`,
		`{"active":true}`,
		`{"caId":"` + fuzzID + `"}`,
		`{"active":false,"certificatePem":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"}`,
		`{"payload":"aGVsbG8="}`,
		`{"certificatePem":"x","organisationName":1}`,
		`{"notAfter":"99999-12-31T00:00:00Z","organisationName":"O"}`,
		`{"organisationName":"Org","useIntermediateCa":true}`,
		`{"usages":["VICAL"],"certificatePem":"x","notAfter":"2040-01-01T00:00:00Z"}`,
		`{"intermediateCaId":"` + fuzzID + `","caId":"` + fuzzID + `"}`,
		`{"usages":[1,"VICAL"],"active":"no"}`,
	})
}

func FuzzPCABody(f *testing.F) {
	const cas, certs = "/v1/private-certificate-authorities", "/v1/private-certificates"
	fuzzBodies(f, []fuzzRoute{
		{"pca", "POST", cas, false},
		{"pca", "POST", cas + "/" + fuzzID + "/activate", false},
		{"pca", "POST", cas + "/" + fuzzID + "/import", false},
		{"pca", "POST", cas + "/" + fuzzID + "/revoke", false},
		{"pca", "POST", cas + "/" + fuzzID + "/crl/enable", false},
		{"pca", "POST", certs, false},
		{"pca", "POST", certs + "/csr", false},
		{"pca", "POST", certs + "/csr/parse", false},
		{"pca", "POST", certs + "/" + fuzzID + "/export", false},
		{"pca", "POST", certs + "/" + fuzzID + "/revoke", false},
		{"pca", "POST", cas + "/" + fuzzID + "/ocsp/switch", false},
	}, []string{
		`{"type":"ROOT","key_algorithm":"EC256","signature_algorithm":"SHA256","distinguished_name":{"common_name":"r","country":"CN","state":"s","locality":"l","organization":"o","organizational_unit":"u"},"validity":{"type":"YEAR","value":10}}`,
		`{"issuer_id":"` + fuzzID + `","signature_algorithm":"SHA256","validity":{"type":"DAY","value":9223372036854775807},"path_length":0}`,
		`{"certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----","certificate_chain":""}`,
		`{"reason":"KEY_COMPROMISE"}`,
		`{"valid_days":7}`,
		`{"issuer_id":"` + fuzzID + `","distinguished_name":{"common_name":"leaf"},"validity":{"type":"MONTH","value":1,"start_from":99999999999999999},"subject_alternative_names":[{"type":"IP","value":"1.2.3.4"}]}`,
		`{"issuer_id":"` + fuzzID + `","csr":"AAAA","validity":{"type":"HOUR","value":-1},"type":"INTERMEDIATE_CA","path_length":7}`,
		`{"csr":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----"}`,
		`{"type":"NGINX","is_compressed":"false","password":"p"}`,
		`{"reason":"NOPE"}`,
		`{"ocsp_switch":true}`,
	})
}

func FuzzAPIGBody(f *testing.F) {
	base := "/v2/" + fuzzTenant + "/apigw/certificates"
	s := newHostileKit(f)
	fuzzBodies(f, []fuzzRoute{
		{"apig", "POST", base, false},
		{"apig", "PUT", base + "/" + strings.Repeat("a", 32), false},
	}, []string{
		s.apigBody("web_cert", s.leafPEM, s.leafKeyPEM),
		s.apigBody("web_cert2", s.leafPEM, s.leafKeyPEM),
		`{"name":"web","cert_content":"x","private_key":"y","type":"instance"}`,
		`{"name":"` + strings.Repeat("n", 60) + `","private_key":"\u0000"}`,
		`{"name":"证书名称","cert_content":"x","private_key":"y","algorithm_type":"SM2","cert_content_sign":"c","private_key_sign":"k"}`,
		`{"name":"证书_1","algorithm_type":null,"cert_content_sign":"","private_key_sign":null}`,
	})
}

func FuzzAdminBody(f *testing.F) {
	fuzzBodies(f, []fuzzRoute{
		{"czertainly", "POST", "/v1/admins", true},
		{"czertainly", "POST", "/v1/admins/" + fuzzID, true},
		{"czertainly", "DELETE", "/v1/admins", true},
		{"czertainly", "PUT", "/v1/admins/enable", true},
		{"czertainly", "PUT", "/v1/admins/disable", true},
	}, []string{
		`{"adminCertificate":"` + base64.StdEncoding.EncodeToString([]byte("not DER")) + `","username":"u","name":"n","surname":"s","email":"e@example.com","role":"administrator"}`,
		`{"name":"n","surname":"s","email":"e@example.com","role":"superAdministrator","enabled":true}`,
		`["` + fuzzID + `"]`,
		`[]`,
		`[1,2,3]`,
	})
}

func FuzzKeysBody(f *testing.F) {
	fuzzBodies(f, []fuzzRoute{
		{"native", "POST", "/v1/keys", false},
		{"native", "POST", "/v1/keys/" + fuzzID + "/sign", false},
		{"native", "POST", "/v1/keys/" + fuzzID + "/verify", false},
		{"native", "POST", "/v1/tokens", true},
	}, []string{
		`{"algorithm":"EC256","label":"k"}`,
		`{"digest":"` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `","algorithm":"ES256"}`,
		`{"message":"aGVsbG8","algorithm":"EdDSA","signature":"AAAA"}`,
		`{"tenant":"t","roles":["admin"],"expires_at":"9999-12-31T23:59:59Z"}`,
		`{"tenant":"t","roles":["admin"],"expires_at":"10000-01-01T00:00:00Z"}`,
	})
}

// FuzzCertHeader: the X-APP-CERTIFICATE header of trusted-proxy mode
// (URL-encoded PEM or base64 DER). Anything but the bootstrapped
// administrator's certificate is a 401 in the CZERTAINLY envelope.
func FuzzCertHeader(f *testing.F) {
	fr := newFuzzRouter(f)
	ca := testpki.NewCA(f, "other CA")
	other := ca.Issue(f, testpki.Options{CommonName: "stranger"})
	for _, s := range []string{fr.admin, other.B64(), string(other.PEM()), strings.ReplaceAll(string(other.PEM()), "\n", "%0A"),
		"%2D%2D%2D%2D%2DBEGIN+CERTIFICATE", "-----BEGIN+CERTIFICATE-----%2B", "%zz", "MIIB", "!!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		w := fr.serve(t, fuzzRoute{"czertainly", "GET", "/v1/admins", true}, nil, "X-APP-CERTIFICATE", v)
		require.NotEqual(t, http.StatusInternalServerError, w.Code, "answered 500: %s", w.Body.Bytes())
		if w.Code >= 400 {
			checkFamilyEnvelope(t, "czertainly", w.Code, w.Body.Bytes())
			assert.Contains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, w.Code)
		}
	})
}
