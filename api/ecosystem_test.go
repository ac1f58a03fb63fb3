package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/dts"
)

const (
	caPath     = "/v1/ecosystems/certificates/ca"
	signerPath = "/v1/ecosystems/certificates/vical-signers"
	testIAN    = "https://dts.example.com/iaca"
)

type dtsFixture struct {
	t   *testing.T
	env *apitest.Env
	tok string
}

func newDTS(t *testing.T, backend string, opts ...apitest.Options) *dtsFixture {
	t.Helper()
	var o apitest.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.DTS == nil {
		o.DTS = []dts.Option{dts.IssuerAltName(testIAN)}
	}
	env := apitest.New(t, backend, o)
	return &dtsFixture{t: t, env: env, tok: env.NewToken("t1", signer.RoleDTSProvider)}
}

func (f *dtsFixture) do(method, path string, body any) *apitest.Response {
	f.t.Helper()
	return f.env.Do(method, path, f.tok, body)
}

// root creates a managed root and returns its object.
func (f *dtsFixture) root(body any) map[string]any {
	f.t.Helper()
	r := f.do("POST", caPath, body)
	require.Equal(f.t, http.StatusCreated, r.Status, string(r.Body))
	return r.Map(f.t)
}

func (f *dtsFixture) hsmKeys() int {
	f.t.Helper()
	keys, err := f.env.HSM.List(context.Background())
	require.NoError(f.t, err)
	return len(keys)
}

func (f *dtsFixture) quota(resource string) int64 {
	f.t.Helper()
	n, err := f.env.Store.QuotaUsage(context.Background(), "t1", resource)
	require.NoError(f.t, err)
	return n
}

// counter reads one event counter from the /metrics output.
func counter(t *testing.T, env *apitest.Env, event, stage string) int {
	t.Helper()
	r := env.Do("GET", "/metrics", "", nil)
	require.Equal(t, 200, r.Status)
	re := regexp.MustCompile(`hsmca_events_total\{event="` + event + `",stage="` + stage + `"\} (\d+)`)
	m := re.FindSubmatch(r.Body)
	if m == nil {
		return 0
	}
	n, err := strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	return n
}

// envelope checks an ecosystem error answer (details always a list) and
// returns its details.
func envelope(t *testing.T, r *apitest.Response, status int, code string) []map[string]any {
	t.Helper()
	require.Equal(t, status, r.Status, string(r.Body))
	m := r.Map(t)
	assert.Equal(t, code, m["code"], string(r.Body))
	assert.NotEmpty(t, m["message"])
	d, ok := m["details"].([]any)
	require.True(t, ok, "details is always a list: %s", r.Body)
	var out []map[string]any
	for _, x := range d {
		out = append(out, x.(map[string]any))
	}
	return out
}

func params(details []map[string]any) []string {
	out := []string{}
	for _, d := range details {
		out = append(out, d["param"].(string))
	}
	return out
}

func parsePEMCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	require.NotNil(t, b, s)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is required for this test: %v", err)
	}
	out, err := exec.Command("openssl", args...).CombinedOutput()
	require.NoError(t, err, "openssl %v: %s", args, out)
	return string(out)
}

func TestDTSRootCARoundTrip(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			before := time.Now().UTC().Truncate(time.Second)
			// The seed's example request.
			r := f.do("POST", caPath, `{"organisationName": "Example Inc."}`)
			require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
			m := r.Map(t)
			id, ok := m["id"].(string)
			require.True(t, ok)
			_, err := uuid.Parse(id)
			require.NoError(t, err)
			assert.Equal(t, caPath+"/"+id, r.Header.Get("Location"))
			assert.Equal(t, true, m["active"])
			assert.Equal(t, true, m["isManaged"])
			pemText, ok := m["certificatePem"].(string)
			require.True(t, ok)
			cert := parsePEMCert(t, pemText)
			sum := sha256.Sum256(cert.Raw)
			assert.Equal(t, hex.EncodeToString(sum[:]), m["certificateFingerprint"])
			data, ok := m["certificateData"].(map[string]any)
			require.True(t, ok)
			assert.Equal(t, "t1 DTS CA", data["commonName"])
			assert.Equal(t, "US", data["country"])
			assert.Equal(t, "Example Inc.", data["organisationName"])
			nb, err := time.Parse(time.RFC3339, data["notBefore"].(string))
			require.NoError(t, err)
			na, err := time.Parse(time.RFC3339, data["notAfter"].(string))
			require.NoError(t, err)
			assert.Regexp(t, `Z$`, data["notBefore"])
			assert.False(t, nb.Before(before))
			assert.Equal(t, nb.AddDate(20, 0, 0), na)
			assert.True(t, cert.NotBefore.Equal(nb) && cert.NotAfter.Equal(na))
			assert.Equal(t, 1, f.hsmKeys())

			r = f.do("GET", caPath+"/"+id, nil)
			require.Equal(t, 200, r.Status)
			assert.Equal(t, m, r.Map(t))

			r = f.do("GET", caPath, nil)
			require.Equal(t, 200, r.Status)
			list := r.Map(t)
			assert.NotContains(t, list, "nextCursor")
			require.Len(t, list["data"], 1)
			assert.Equal(t, m, list["data"].([]any)[0])

			r = f.do("PUT", caPath+"/"+id, map[string]any{"active": false})
			require.Equal(t, 200, r.Status, string(r.Body))
			assert.Equal(t, false, r.Map(t)["active"])
			r = f.do("GET", caPath+"/"+id, nil)
			assert.Equal(t, false, r.Map(t)["active"])

			d := envelope(t, f.do("PUT", caPath+"/"+id, map[string]any{}), 400, "BadRequest")
			assert.Equal(t, []string{"active"}, params(d))
			d = envelope(t, f.do("PUT", caPath+"/"+id, map[string]any{"active": "yes"}), 400, "BadRequest")
			assert.Equal(t, []string{"active"}, params(d))
			assert.Equal(t, "yes", d[0]["value"])
			d = envelope(t, f.do("GET", caPath+"/not-a-uuid", nil), 400, "BadRequest")
			assert.Equal(t, "path", d[0]["location"])

			r = f.do("DELETE", caPath+"/"+id, nil)
			require.Equal(t, http.StatusNoContent, r.Status, string(r.Body))
			envelope(t, f.do("GET", caPath+"/"+id, nil), 404, "NotFound")
			envelope(t, f.do("DELETE", caPath+"/"+id, nil), 404, "NotFound")
			envelope(t, f.env.Do("GET", caPath+"/"+id+"/revocation-list", "", nil), 404, "NotFound")
			assert.Equal(t, 0, f.hsmKeys(), "the root's HSM key is destroyed")
			assert.Equal(t, int64(0), f.quota(dts.QuotaRoots))
		})
	}
}

func TestDTSRootCACustomFields(t *testing.T) {
	f := newDTS(t, "bolt")
	nb := time.Now().UTC().Add(time.Hour).Truncate(time.Second)
	na := nb.AddDate(5, 0, 0)
	m := f.root(map[string]any{"organisationName": "Example Inc.", "commonName": "example.com", "country": "NZ",
		"notBefore": nb.Format(time.RFC3339), "notAfter": na.Format(time.RFC3339)})
	data := m["certificateData"].(map[string]any)
	assert.Equal(t, "example.com", data["commonName"])
	assert.Equal(t, "NZ", data["country"])
	assert.Equal(t, nb.Format(time.RFC3339), data["notBefore"])
	assert.Equal(t, na.Format(time.RFC3339), data["notAfter"])
	cert := parsePEMCert(t, m["certificatePem"].(string))
	assert.Equal(t, []string{"NZ"}, cert.Subject.Country)
	assert.Equal(t, []string{"Example Inc."}, cert.Subject.Organization)
	assert.Equal(t, "example.com", cert.Subject.CommonName)

	// notAfter alone defaults notBefore to now; the bound is 20 years
	// from creation, not from notBefore (ecosystem_rules_test.go).
	na = time.Now().UTC().AddDate(20, 0, 0).Add(-time.Minute).Truncate(time.Second)
	m = f.root(map[string]any{"organisationName": "Example Inc.", "notAfter": na.Format(time.RFC3339)})
	assert.Equal(t, na.Format(time.RFC3339), m["certificateData"].(map[string]any)["notAfter"])
}

func TestDTSRootCAProfile(t *testing.T) {
	f := newDTS(t, "bolt")
	m := f.root(map[string]any{"organisationName": "Example Inc.", "commonName": "example.com", "country": "NZ"})
	pemText := m["certificatePem"].(string)
	cert := parsePEMCert(t, pemText)

	assert.Equal(t, 3, cert.Version)
	assert.Equal(t, 1, cert.SerialNumber.Sign())
	serialDER, err := asn1.Marshal(cert.SerialNumber)
	require.NoError(t, err)
	assert.LessOrEqual(t, len(serialDER)-2, 20, "serial at most 20 octets")
	assert.True(t, cert.IsCA)
	assert.True(t, cert.BasicConstraintsValid)
	assert.Equal(t, 0, cert.MaxPathLen)
	assert.True(t, cert.MaxPathLenZero)
	assert.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, cert.KeyUsage)
	assert.NotEmpty(t, cert.SubjectKeyId)
	assert.Equal(t, x509.ECDSAWithSHA256, cert.SignatureAlgorithm)
	assert.Equal(t, elliptic.P256(), cert.PublicKey.(*ecdsa.PublicKey).Curve)
	require.NoError(t, cert.CheckSignatureFrom(cert))
	var ian []asn1.RawValue
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 18}) {
			_, err := asn1.Unmarshal(ext.Value, &ian)
			require.NoError(t, err)
		}
	}
	require.Len(t, ian, 1)
	assert.Equal(t, 6, ian[0].Tag)
	assert.Equal(t, testIAN, string(ian[0].Bytes))

	path := writeTemp(t, "root.pem", []byte(pemText))
	text := openssl(t, "x509", "-in", path, "-noout", "-text")
	assert.Contains(t, text, "Version: 3")
	assert.Contains(t, text, "Subject: C = NZ, O = Example Inc., CN = example.com")
	assert.Contains(t, text, "X509v3 Subject Key Identifier")
	assert.Contains(t, text, "X509v3 Issuer Alternative Name")
	assert.Contains(t, text, "URI:"+testIAN)
	assert.Regexp(t, `X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0`, text)
	assert.Regexp(t, `X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign`, text)
	assert.Contains(t, openssl(t, "verify", "-CAfile", path, path), "OK")
}

func TestDTSRootCAIssuerAltNameEmailAndUnset(t *testing.T) {
	// Each daemon in its own subtest: a SoftHSM2 token made while another
	// test daemon holds the library open would not be visible.
	withIAN := func(v string) apitest.Options {
		return apitest.Options{DTS: []dts.Option{dts.IssuerAltName(v)}}
	}
	t.Run("email", func(t *testing.T) {
		f := newDTS(t, "bolt", withIAN("pki@example.com"))
		m := f.root(map[string]any{"organisationName": "Example Inc."})
		path := writeTemp(t, "root.pem", []byte(m["certificatePem"].(string)))
		assert.Contains(t, openssl(t, "x509", "-in", path, "-noout", "-text"), "email:pki@example.com")
	})
	t.Run("unset", func(t *testing.T) {
		// Refused rather than made without it (ecosystem_rules_test.go).
		f := newDTS(t, "bolt", withIAN(""))
		envelope(t, f.do("POST", caPath, map[string]any{"organisationName": "Example Inc."}), 503, api.EcosystemCodeNoIssuerAltName)
		assert.Equal(t, 0, f.hsmKeys())
	})
	t.Run("invalid", func(t *testing.T) {
		f := newDTS(t, "bolt", withIAN("not a name"))
		envelope(t, f.do("POST", caPath, map[string]any{"organisationName": "Example Inc."}), 500, "InternalServerError")
		assert.Equal(t, 0, f.hsmKeys())
		assert.NotContains(t, f.env.Logs.String(), "panic")
	})
}

func TestDTSRootCAValidation(t *testing.T) {
	past := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	soon := time.Now().UTC().Add(time.Hour)
	ca := testpki.NewCA(t, "external DTS root")
	cases := []struct {
		name   string
		body   any
		params []string
	}{
		{"missing organisationName", `{}`, []string{"organisationName"}},
		{"empty organisationName", `{"organisationName": " "}`, []string{"organisationName"}},
		{"organisationName not a string", `{"organisationName": 5}`, []string{"organisationName"}},
		{"organisationName too long", map[string]any{"organisationName": string(make([]byte, 65))}, []string{"organisationName"}},
		{"organisationName with a right-to-left override", map[string]any{"organisationName": "Example \u202eInc."}, []string{"organisationName"}},
		{"organisationName with a zero-width space", map[string]any{"organisationName": "Exa\u200bmple"}, []string{"organisationName"}},
		{"empty commonName", `{"organisationName": "X", "commonName": ""}`, []string{"commonName"}},
		{"commonName not printable", `{"organisationName": "X", "commonName": "a_b*"}`, []string{"commonName"}},
		{"unknown country", `{"organisationName": "X", "country": "XX"}`, []string{"country"}},
		{"lowercase country", `{"organisationName": "X", "country": "nz"}`, []string{"country"}},
		{"alpha-3 country", `{"organisationName": "X", "country": "USA"}`, []string{"country"}},
		{"notBefore not a date", `{"organisationName": "X", "notBefore": "tomorrow"}`, []string{"notBefore"}},
		{"notBefore in the past", map[string]any{"organisationName": "X", "notBefore": past}, []string{"notBefore"}},
		{"notAfter not a date", `{"organisationName": "X", "notAfter": "2030-13-01"}`, []string{"notAfter"}},
		{"notAfter before notBefore", map[string]any{"organisationName": "X", "notBefore": soon.Add(time.Hour).Format(time.RFC3339),
			"notAfter": soon.Format(time.RFC3339)}, []string{"notAfter"}},
		{"notAfter over 20 years", map[string]any{"organisationName": "X",
			"notAfter": time.Now().UTC().AddDate(20, 0, 2).Format(time.RFC3339)}, []string{"notAfter"}},
		{"notAfter in the past", map[string]any{"organisationName": "X", "notAfter": past}, []string{"notAfter"}},
		{"unknown field", `{"organisationName": "X", "organizationName": "Y"}`, []string{"organizationName"}},
		{"several at once", `{"commonName": "", "country": "XX", "notBefore": "bad", "notAfter": 7}`,
			[]string{"organisationName", "commonName", "country", "notBefore", "notAfter"}},
		{"managed fields with certificatePem", map[string]any{"certificatePem": string(ca.PEM()), "organisationName": "X", "country": "NZ"},
			[]string{"organisationName", "country"}},
		{"certificatePem not PEM", `{"certificatePem": "hello"}`, []string{"certificatePem"}},
		{"certificatePem not a string", `{"certificatePem": {}}`, []string{"certificatePem"}},
	}
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					d := envelope(t, f.do("POST", caPath, tc.body), 400, "BadRequest")
					assert.ElementsMatch(t, tc.params, params(d), "%v", d)
					for _, x := range d {
						assert.Equal(t, "body", x["location"])
						assert.NotEmpty(t, x["msg"])
					}
				})
			}
			envelope(t, f.do("POST", caPath, `[1]`), 400, "BadRequest")
			envelope(t, f.do("POST", caPath, `{"organisationName":`), 400, "BadRequest")
			envelope(t, f.do("POST", caPath, nil), 400, "BadRequest")
			assert.Equal(t, 0, f.hsmKeys(), "no failed create leaves an HSM object")
			assert.Equal(t, int64(0), f.quota(dts.QuotaRoots), "no failed create uses quota")
			assert.Equal(t, len(cases), counter(t, f.env, "ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE", "FAIL"))
		})
	}
}

// raceCreates fires n concurrent creates spread over envs and counts the
// answers by status.
func raceCreates(t *testing.T, n int, envs []*apitest.Env, tok string) map[int]int {
	var (
		mu     sync.Mutex
		counts = map[int]int{}
		wg     sync.WaitGroup
		start  = make(chan struct{})
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			env := envs[i%len(envs)]
			r := env.Do("POST", caPath, tok, map[string]any{"organisationName": fmt.Sprintf("Org %d", i)})
			if r.Status == http.StatusConflict {
				m := r.Map(t)
				assert.Equal(t, "Conflict", m["code"])
				assert.Contains(t, m["message"], "maximum of three")
			}
			mu.Lock()
			counts[r.Status]++
			mu.Unlock()
		}(i)
	}
	close(start)
	wg.Wait()
	return counts
}

func TestDTSRootCAQuotaRace(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			counts := raceCreates(t, 50, []*apitest.Env{f.env}, f.tok)
			assert.Equal(t, map[int]int{201: 3, 409: 47}, counts)
			assert.Equal(t, 50, counter(t, f.env, "ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE", "START"))
			assert.Equal(t, 3, counter(t, f.env, "ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE", "SUCCESS"))
			assert.Equal(t, 47, counter(t, f.env, "ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE", "FAIL"))
			assert.Equal(t, 3, f.hsmKeys(), "refused creates leave no HSM object")
			assert.Equal(t, int64(3), f.quota(dts.QuotaRoots))
			intents, err := f.env.Store.ListIntents(context.Background())
			require.NoError(t, err)
			assert.Empty(t, intents)

			// The limit is on live roots: deleting one frees a place.
			envelope(t, f.do("POST", caPath, map[string]any{"organisationName": "X"}), 409, "Conflict")
			list := f.do("GET", caPath, nil).Map(t)["data"].([]any)
			require.Len(t, list, 3)
			id := list[0].(map[string]any)["id"].(string)
			require.Equal(t, 204, f.do("DELETE", caPath+"/"+id, nil).Status)
			f.root(map[string]any{"organisationName": "X"})
		})
	}
}

func TestDTSRootCAQuotaAcrossReplicas(t *testing.T) {
	a := newDTS(t, "redis")
	b := apitest.New(t, "redis", apitest.Options{Redis: a.env.Redis, Token: a.env.Token,
		DTS: []dts.Option{dts.IssuerAltName(testIAN)}})
	counts := raceCreates(t, 20, []*apitest.Env{a.env, b}, a.tok)
	assert.Equal(t, map[int]int{201: 3, 409: 17}, counts)
	assert.Equal(t, 3, a.hsmKeys())
	assert.Equal(t, int64(3), a.quota(dts.QuotaRoots))
	starts := counter(t, a.env, "ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE", "START") + counter(t, b, "ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE", "START")
	assert.Equal(t, 20, starts)
	// Each replica sees the roots the other made.
	assert.Len(t, b.Do("GET", caPath, a.tok, nil).Map(t)["data"], 3)
}

func TestDTSRootCAPaging(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			var ids []string
			for i := 0; i < 3; i++ {
				ids = append(ids, f.root(map[string]any{"organisationName": "X"})["id"].(string))
			}
			r := f.do("GET", caPath+"?limit=2", nil)
			require.Equal(t, 200, r.Status)
			page := r.Map(t)
			require.Len(t, page["data"], 2)
			cursor, ok := page["nextCursor"].(string)
			require.True(t, ok)
			r = f.do("GET", caPath+"?limit=2&cursor="+cursor, nil)
			require.Equal(t, 200, r.Status, string(r.Body))
			page2 := r.Map(t)
			require.Len(t, page2["data"], 1)
			assert.NotContains(t, page2, "nextCursor")
			got := []string{}
			for _, x := range append(page["data"].([]any), page2["data"].([]any)...) {
				got = append(got, x.(map[string]any)["id"].(string))
			}
			assert.Equal(t, ids, got)

			for _, q := range []string{"limit=0", "limit=1001", "limit=ten", "limit=-1"} {
				d := envelope(t, f.do("GET", caPath+"?"+q, nil), 400, "BadRequest")
				assert.Equal(t, []string{"limit"}, params(d))
				assert.Equal(t, "query", d[0]["location"])
			}
			d := envelope(t, f.do("GET", caPath+"?cursor=%00garbage", nil), 400, "BadRequest")
			assert.Equal(t, []string{"cursor"}, params(d))
			assert.Len(t, f.do("GET", caPath+"?limit=1000", nil).Map(t)["data"], 3)
		})
	}
}

func TestDTSUnmanagedRoot(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			ca := testpki.NewCA(t, "External IACA")
			r := f.do("POST", caPath, map[string]any{"certificatePem": string(ca.PEM())})
			require.Equal(t, 201, r.Status, string(r.Body))
			m := r.Map(t)
			assert.Equal(t, false, m["isManaged"])
			assert.Equal(t, true, m["active"])
			sum := sha256.Sum256(ca.Cert.Raw)
			assert.Equal(t, hex.EncodeToString(sum[:]), m["certificateFingerprint"])
			data := m["certificateData"].(map[string]any)
			assert.Equal(t, "External IACA", data["commonName"])
			assert.Equal(t, "hsmca tests", data["organisationName"])
			assert.Equal(t, ca.Cert.NotAfter.UTC().Format(time.RFC3339), data["notAfter"])
			assert.Equal(t, 0, f.hsmKeys(), "an unmanaged root holds no key")
			assert.Equal(t, int64(1), f.quota(dts.QuotaRoots))

			d := envelope(t, f.env.Do("GET", caPath+"/"+m["id"].(string)+"/revocation-list", "", nil), 404, api.EcosystemCodeNoCRL)
			assert.Empty(t, d)
			envelope(t, f.do("POST", caPath, map[string]any{"certificatePem": string(ca.PEM())}), 409, "Conflict")

			leaf := ca.Issue(t, testpki.Options{CommonName: "not a CA"})
			d = envelope(t, f.do("POST", caPath, map[string]any{"certificatePem": string(leaf.PEM())}), 400, "BadRequest")
			assert.Equal(t, []string{"certificatePem"}, params(d))
			assert.Contains(t, d[0]["msg"], "CA certificate")

			expired := expiredCA(t)
			d = envelope(t, f.do("POST", caPath, map[string]any{"certificatePem": string(expired)}), 400, "BadRequest")
			assert.Equal(t, []string{"certificatePem"}, params(d))
			assert.Contains(t, d[0]["msg"], "expired")
			assert.Equal(t, int64(1), f.quota(dts.QuotaRoots))

			require.Equal(t, 204, f.do("DELETE", caPath+"/"+m["id"].(string), nil).Status)
			assert.Equal(t, int64(0), f.quota(dts.QuotaRoots))
		})
	}
}

func expiredCA(t *testing.T) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Old IACA"},
		NotBefore: time.Now().AddDate(-2, 0, 0), NotAfter: time.Now().AddDate(-1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestVICALSignerManagedRoot(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			root := f.root(map[string]any{"organisationName": "Example Inc.", "country": "NZ"})
			rootID := root["id"].(string)
			rootCert := parsePEMCert(t, root["certificatePem"].(string))

			r := f.do("POST", signerPath, map[string]any{"caId": rootID})
			require.Equal(t, 201, r.Status, string(r.Body))
			s := r.Map(t)
			id := s["id"].(string)
			assert.Equal(t, rootID, s["caId"])
			assert.Equal(t, false, s["active"])
			assert.Contains(t, s["csrPem"], "BEGIN CERTIFICATE REQUEST")
			cert := parsePEMCert(t, s["certificatePem"].(string))
			sum := sha256.Sum256(cert.Raw)
			assert.Equal(t, hex.EncodeToString(sum[:]), s["certificateFingerprint"])
			data := s["certificateData"].(map[string]any)
			assert.Equal(t, "NZ", data["country"])
			assert.Equal(t, cert.Subject.CommonName, data["commonName"])
			assert.Equal(t, cert.NotAfter.UTC().Format(time.RFC3339), data["notAfter"])

			require.NoError(t, cert.CheckSignatureFrom(rootCert))
			assert.Equal(t, x509.KeyUsageDigitalSignature, cert.KeyUsage)
			assert.False(t, cert.IsCA)
			assert.Equal(t, rootCert.SubjectKeyId, cert.AuthorityKeyId)
			assert.False(t, cert.NotBefore.Before(rootCert.NotBefore))
			assert.False(t, cert.NotAfter.After(rootCert.NotAfter))
			b, _ := pem.Decode([]byte(s["csrPem"].(string)))
			csr, err := x509.ParseCertificateRequest(b.Bytes)
			require.NoError(t, err)
			require.NoError(t, csr.CheckSignature())
			assert.True(t, csr.PublicKey.(*ecdsa.PublicKey).Equal(cert.PublicKey))

			rootPath := writeTemp(t, "root.pem", []byte(root["certificatePem"].(string)))
			leafPath := writeTemp(t, "signer.pem", []byte(s["certificatePem"].(string)))
			assert.Contains(t, openssl(t, "verify", "-CAfile", rootPath, leafPath), "OK")
			text := openssl(t, "x509", "-in", leafPath, "-noout", "-text")
			assert.Regexp(t, `X509v3 Key Usage: critical\s+Digital Signature`, text)
			assert.Contains(t, text, "URI:"+testIAN)

			// Signing needs an active signer.
			envelope(t, f.do("POST", signerPath+"/"+id+"/sign", map[string]any{"payload": "aGVsbG8="}), 409, "Conflict")
			r = f.do("PUT", signerPath+"/"+id, map[string]any{"active": true})
			require.Equal(t, 200, r.Status, string(r.Body))
			assert.Equal(t, true, r.Map(t)["active"])
			payload := []byte("VICAL payload")
			r = f.do("POST", signerPath+"/"+id+"/sign", map[string]any{"payload": base64.StdEncoding.EncodeToString(payload)})
			require.Equal(t, 200, r.Status, string(r.Body))
			out := r.Map(t)
			assert.Equal(t, "ECDSA-SHA256", out["algorithm"])
			sig, err := base64.StdEncoding.DecodeString(out["signature"].(string))
			require.NoError(t, err)
			digest := sha256.Sum256(payload)
			assert.True(t, ecdsa.VerifyASN1(cert.PublicKey.(*ecdsa.PublicKey), digest[:], sig))
			pub, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
			require.NoError(t, err)
			pubPath := writeTemp(t, "pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
			assert.Contains(t, openssl(t, "dgst", "-sha256", "-verify", pubPath, "-signature", writeTemp(t, "sig.bin", sig),
				writeTemp(t, "payload.bin", payload)), "Verified OK")

			// A certificate issued here cannot be replaced.
			d := envelope(t, f.do("PUT", signerPath+"/"+id, map[string]any{"certificatePem": s["certificatePem"]}), 409, "Conflict")
			assert.Equal(t, []string{"certificatePem"}, params(d))

			// Signing payload errors.
			d = envelope(t, f.do("POST", signerPath+"/"+id+"/sign", map[string]any{"payload": "***"}), 400, "BadRequest")
			assert.Equal(t, []string{"payload"}, params(d))
			d = envelope(t, f.do("POST", signerPath+"/"+id+"/sign", map[string]any{}), 400, "BadRequest")
			assert.Equal(t, []string{"payload"}, params(d))

			// The root's CRL is public, DER, signed by the root; it lists
			// the signer once deleted.
			crl := fetchCRL(t, f.env, rootID, rootCert)
			assert.Empty(t, crl.RevokedCertificateEntries)
			assert.Equal(t, 2, f.hsmKeys())
			require.Equal(t, 204, f.do("DELETE", signerPath+"/"+id, nil).Status)
			assert.Equal(t, 1, f.hsmKeys(), "the signer's key is destroyed")
			envelope(t, f.do("GET", signerPath+"/"+id, nil), 404, "NotFound")
			crl2 := fetchCRL(t, f.env, rootID, rootCert)
			require.Len(t, crl2.RevokedCertificateEntries, 1)
			assert.Equal(t, 0, crl2.RevokedCertificateEntries[0].SerialNumber.Cmp(cert.SerialNumber))
			assert.Equal(t, 1, crl2.Number.Cmp(crl.Number), "CRL numbers increase")
			crlPath := writeTemp(t, "root.crl", crl2.Raw)
			assert.Contains(t, openssl(t, "crl", "-inform", "DER", "-in", crlPath, "-CAfile", rootPath, "-noout"), "verify OK")
			assert.Equal(t, int64(0), f.quota(dts.QuotaSigners))
		})
	}
}

func fetchCRL(t *testing.T, env *apitest.Env, rootID string, root *x509.Certificate) *x509.RevocationList {
	t.Helper()
	r := env.Do("GET", caPath+"/"+rootID+"/revocation-list", "", nil)
	require.Equal(t, 200, r.Status, string(r.Body))
	assert.Equal(t, "application/pkix-crl", r.Header.Get("Content-Type"))
	crl, err := x509.ParseRevocationList(r.Body)
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(root))
	return crl
}

func TestVICALSignerUnmanagedRoot(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			ca := testpki.NewCA(t, "External IACA")
			root := f.root(map[string]any{"certificatePem": string(ca.PEM())})
			rootID := root["id"].(string)

			r := f.do("POST", signerPath, map[string]any{"caId": rootID})
			require.Equal(t, 201, r.Status, string(r.Body))
			s := r.Map(t)
			id := s["id"].(string)
			assert.NotContains(t, s, "certificatePem")
			assert.NotContains(t, s, "certificateData")
			assert.Equal(t, false, s["active"])
			b, _ := pem.Decode([]byte(s["csrPem"].(string)))
			csr, err := x509.ParseCertificateRequest(b.Bytes)
			require.NoError(t, err)

			d := envelope(t, f.do("PUT", signerPath+"/"+id, map[string]any{"active": true}), 400, "BadRequest")
			assert.Equal(t, []string{"active"}, params(d))
			envelope(t, f.do("POST", signerPath+"/"+id+"/sign", map[string]any{"payload": "aGk="}), 409, "Conflict")

			issue := func(issuer *testpki.CA, pub any) string {
				tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: csr.Subject,
					NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
					KeyUsage: x509.KeyUsageDigitalSignature}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, pub, issuer.Key)
				require.NoError(t, err)
				return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
			}
			other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			d = envelope(t, f.do("PUT", signerPath+"/"+id, map[string]any{"certificatePem": issue(ca, &other.PublicKey)}), 400, "BadRequest")
			assert.Equal(t, []string{"certificatePem"}, params(d))
			assert.Contains(t, d[0]["msg"], "public key")
			d = envelope(t, f.do("PUT", signerPath+"/"+id, map[string]any{"certificatePem": issue(testpki.NewCA(t, "External IACA"), csr.PublicKey)}), 400, "BadRequest")
			assert.Contains(t, d[0]["msg"], "chain")

			good := issue(ca, csr.PublicKey)
			r = f.do("PUT", signerPath+"/"+id, map[string]any{"certificatePem": good, "active": true})
			require.Equal(t, 200, r.Status, string(r.Body))
			s = r.Map(t)
			assert.Equal(t, true, s["active"])
			assert.Equal(t, good, s["certificatePem"])
			assert.NotEmpty(t, s["certificateFingerprint"])

			d = envelope(t, f.do("PUT", signerPath+"/"+id, map[string]any{"certificatePem": issue(ca, csr.PublicKey)}), 409, "Conflict")
			assert.Equal(t, []string{"certificatePem"}, params(d))

			r = f.do("POST", signerPath+"/"+id+"/sign", map[string]any{"payload": base64.StdEncoding.EncodeToString([]byte("x"))})
			require.Equal(t, 200, r.Status, string(r.Body))

			r = f.do("PUT", signerPath+"/"+id, map[string]any{"active": false})
			require.Equal(t, 200, r.Status)
			assert.Equal(t, false, r.Map(t)["active"])
			envelope(t, f.do("POST", signerPath+"/"+id+"/sign", map[string]any{"payload": "eA=="}), 409, "Conflict")
		})
	}
}

func TestVICALSignerRootStateAndQuota(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			rootID := f.root(map[string]any{"organisationName": "Example Inc."})["id"].(string)

			d := envelope(t, f.do("POST", signerPath, map[string]any{}), 400, "BadRequest")
			assert.Equal(t, []string{"caId"}, params(d))
			d = envelope(t, f.do("POST", signerPath, map[string]any{"caId": "nope", "extra": 1}), 400, "BadRequest")
			assert.ElementsMatch(t, []string{"caId", "extra"}, params(d))
			d = envelope(t, f.do("POST", signerPath, map[string]any{"caId": uuid.NewString()}), 404, "NotFound")
			assert.Equal(t, []string{"caId"}, params(d))

			var ids []string
			for i := 0; i < 5; i++ {
				r := f.do("POST", signerPath, map[string]any{"caId": rootID})
				require.Equal(t, 201, r.Status, string(r.Body))
				ids = append(ids, r.Map(t)["id"].(string))
			}
			r := f.do("POST", signerPath, map[string]any{"caId": rootID})
			envelope(t, r, 409, "Conflict")
			assert.Contains(t, r.Map(t)["message"], "maximum of five")
			assert.Equal(t, 6, f.hsmKeys(), "one root and five signer keys")
			assert.Equal(t, int64(5), f.quota(dts.QuotaSigners))

			page := f.do("GET", signerPath+"?limit=3", nil).Map(t)
			require.Len(t, page["data"], 3)
			assert.NotEmpty(t, page["nextCursor"])

			require.Equal(t, 200, f.do("PUT", signerPath+"/"+ids[0], map[string]any{"active": true}).Status)
			require.Equal(t, 200, f.do("POST", signerPath+"/"+ids[0]+"/sign", map[string]any{"payload": "eA=="}).Status)

			// An inactive root refuses signing and issuing.
			require.Equal(t, 200, f.do("PUT", caPath+"/"+rootID, map[string]any{"active": false}).Status)
			r = f.do("POST", signerPath+"/"+ids[0]+"/sign", map[string]any{"payload": "eA=="})
			envelope(t, r, 409, "Conflict")
			assert.Contains(t, r.Map(t)["message"], "not active")
			require.Equal(t, 204, f.do("DELETE", signerPath+"/"+ids[4], nil).Status)
			envelope(t, f.do("POST", signerPath, map[string]any{"caId": rootID}), 409, "Conflict")
			assert.Equal(t, 5, f.hsmKeys())
			assert.Equal(t, int64(4), f.quota(dts.QuotaSigners))

			// Deleting the root leaves its signers unable to sign.
			require.Equal(t, 200, f.do("PUT", caPath+"/"+rootID, map[string]any{"active": true}).Status)
			require.Equal(t, 200, f.do("POST", signerPath+"/"+ids[0]+"/sign", map[string]any{"payload": "eA=="}).Status)
			require.Equal(t, 204, f.do("DELETE", caPath+"/"+rootID, nil).Status)
			envelope(t, f.do("POST", signerPath+"/"+ids[0]+"/sign", map[string]any{"payload": "eA=="}), 409, "Conflict")
			assert.Equal(t, 4, f.hsmKeys())
		})
	}
}

func TestDTSTenantIsolationAndAccess(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			rootID := f.root(map[string]any{"organisationName": "Example Inc."})["id"].(string)
			r := f.do("POST", signerPath, map[string]any{"caId": rootID})
			require.Equal(t, 201, r.Status)
			signerID := r.Map(t)["id"].(string)

			other := f.env.NewToken("t2", signer.RoleAdmin)
			missing := uuid.NewString()
			for _, tc := range []struct{ method, path string }{
				{"GET", caPath + "/"}, {"PUT", caPath + "/"}, {"DELETE", caPath + "/"},
				{"GET", signerPath + "/"}, {"PUT", signerPath + "/"}, {"DELETE", signerPath + "/"},
			} {
				body := map[string]any{"active": true}
				id := rootID
				if tc.path == signerPath+"/" {
					id = signerID
				}
				theirs := f.env.Do(tc.method, tc.path+id, other, body)
				none := f.env.Do(tc.method, tc.path+missing, other, body)
				envelope(t, theirs, 404, "NotFound")
				envelope(t, none, 404, "NotFound")
				assert.Equal(t, len(theirs.Body)-len(id), len(none.Body)-len(missing), "%s %s", tc.method, tc.path)
			}
			envelope(t, f.env.Do("POST", signerPath+"/"+signerID+"/sign", other, map[string]any{"payload": "eA=="}), 404, "NotFound")
			envelope(t, f.env.Do("POST", signerPath, other, map[string]any{"caId": rootID}), 404, "NotFound")
			assert.Empty(t, f.env.Do("GET", caPath, other, nil).Map(t)["data"])
			assert.Empty(t, f.env.Do("GET", signerPath, other, nil).Map(t)["data"])
			// The owner still sees everything.
			require.Equal(t, 200, f.do("GET", caPath+"/"+rootID, nil).Status)

			envelope(t, f.env.Do("GET", caPath, "", nil), 401, "Unauthorized")
			envelope(t, f.env.Do("POST", signerPath, "", map[string]any{"caId": rootID}), 401, "Unauthorized")
			wrongRole := f.env.NewToken("t1", signer.RoleSigner, signer.RoleCAOperator)
			envelope(t, f.env.Do("GET", caPath, wrongRole, nil), 403, "Forbidden")
			envelope(t, f.env.Do("POST", signerPath+"/"+signerID+"/sign", wrongRole, map[string]any{"payload": "eA=="}), 403, "Forbidden")
			admin := f.env.NewToken("t1", signer.RoleAdmin)
			require.Equal(t, 200, f.env.Do("GET", caPath+"/"+rootID, admin, nil).Status)

			// The CRL needs no credential; an unknown id is 404.
			r = f.env.Do("GET", caPath+"/"+rootID+"/revocation-list", "", nil)
			require.Equal(t, 200, r.Status)
			envelope(t, f.env.Do("GET", caPath+"/"+missing+"/revocation-list", "", nil), 404, "NotFound")
		})
	}
}

func TestDTSEventsCountedAndRecorded(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			rootID := f.root(map[string]any{"organisationName": "Example Inc."})["id"].(string)
			f.do("GET", caPath, nil)
			f.do("GET", caPath+"/"+rootID, nil)
			f.do("GET", caPath+"/"+uuid.NewString(), nil)
			f.do("PUT", caPath+"/"+rootID, map[string]any{"active": true})
			sid := f.do("POST", signerPath, map[string]any{"caId": rootID}).Map(t)["id"].(string)
			f.do("GET", signerPath, nil)
			f.do("GET", signerPath+"/"+sid, nil)
			f.do("PUT", signerPath+"/"+sid, map[string]any{"active": true})
			f.do("POST", signerPath+"/"+sid+"/sign", map[string]any{"payload": "eA=="})
			f.do("DELETE", signerPath+"/"+sid, nil)
			f.do("DELETE", caPath+"/"+rootID, nil)

			for _, ev := range []string{
				"ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE", "ECOSYSTEM_DTS_CA_CERTIFICATE_RETRIEVE_LIST",
				"ECOSYSTEM_DTS_CA_CERTIFICATE_UPDATE", "ECOSYSTEM_DTS_CA_CERTIFICATE_DELETE",
				"ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_CREATE", "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_RETRIEVE_LIST",
				"ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_RETRIEVE", "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_UPDATE",
				"ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_DELETE", "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_SIGN",
			} {
				assert.Equal(t, 1, counter(t, f.env, ev, "START"), ev)
				assert.Equal(t, 1, counter(t, f.env, ev, "SUCCESS"), ev)
				assert.Equal(t, 0, counter(t, f.env, ev, "FAIL"), ev)
			}
			assert.Equal(t, 2, counter(t, f.env, "ECOSYSTEM_DTS_CA_CERTIFICATE_RETRIEVE", "START"))
			assert.Equal(t, 1, counter(t, f.env, "ECOSYSTEM_DTS_CA_CERTIFICATE_RETRIEVE", "FAIL"))

			metrics := string(f.env.Do("GET", "/metrics", "", nil).Body)
			assert.Regexp(t, `hsmca_signing_duration_seconds_count\{key_algorithm="EC256",operation="vical_signer_sign"\} 1`, metrics)
			assert.Regexp(t, `hsmca_signing_duration_seconds_count\{key_algorithm="EC256",operation="dts_root_certificate"\} 1`, metrics)

			evs, err := f.env.Engine.ListEvents(context.Background(), "t1", 0, 0)
			require.NoError(t, err)
			got := map[string]int{}
			for _, ev := range evs {
				got[ev.Operation+"_"+ev.Outcome]++
				if ev.Operation == "ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE" {
					assert.Equal(t, rootID, ev.Resource)
					assert.Contains(t, ev.Principal, "token:")
				}
			}
			assert.Equal(t, 1, got["ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE_SUCCESS"])
			assert.Equal(t, 1, got["ECOSYSTEM_DTS_CA_CERTIFICATE_RETRIEVE_FAIL"])
			assert.Equal(t, 1, got["ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_SIGN_SUCCESS"])
			assert.Equal(t, 1, got["ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_DELETE_SUCCESS"])
			assert.NotContains(t, f.env.Logs.String(), f.tok)
		})
	}
}
