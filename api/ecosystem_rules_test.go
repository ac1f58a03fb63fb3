package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/dts"
)

// The rules MATTR VII states for DTS root CA certificates, against the
// running daemon: notAfter at most 20 years from creation whatever
// notBefore is; an uploaded root must be valid now (not yet valid is
// refused like expired); a managed root always carries an
// IssuerAlternativeName; and every error of the family carries details.

// mattrError checks an ecosystem error answer: status, code, a message
// and details as a list (empty when no field is at fault), and returns
// the details.
func mattrError(t *testing.T, r *apitest.Response, status int, code string) []any {
	t.Helper()
	require.Equal(t, status, r.Status, "%s", r.Body)
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), "%s", r.Body)
	assert.Equal(t, code, m["code"], "%s", r.Body)
	assert.NotEmpty(t, m["message"], "%s", r.Body)
	require.Contains(t, m, "details", "every ecosystem error carries details: %s", r.Body)
	d, ok := m["details"].([]any)
	require.True(t, ok, "details is a list, not null: %s", r.Body)
	return d
}

func TestDTSRootCANotAfterAtMostTwentyYearsFromCreation(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			before := time.Now().UTC().Truncate(time.Second)
			in18Months := before.AddDate(1, 6, 0)

			// The case a future notBefore used to open: notBefore in 18
			// months plus 20 years is 21.5 years from creation.
			r := f.do("POST", caPath, map[string]any{"organisationName": "X",
				"notBefore": in18Months.Format(time.RFC3339), "notAfter": in18Months.AddDate(20, 0, 0).Format(time.RFC3339)})
			d := mattrError(t, r, 400, "BadRequest")
			require.Len(t, d, 1, "%s", r.Body)
			assert.Equal(t, "notAfter", d[0].(map[string]any)["param"])
			assert.Contains(t, d[0].(map[string]any)["msg"], "at most 20 years from creation")

			// One day past 20 years from now, without notBefore.
			r = f.do("POST", caPath, map[string]any{"organisationName": "X",
				"notAfter": before.AddDate(20, 0, 1).Format(time.RFC3339)})
			assert.Equal(t, []string{"notAfter"}, params(envelope(t, r, 400, "BadRequest")))

			// notBefore must leave room for a notAfter within 20 years.
			r = f.do("POST", caPath, map[string]any{"organisationName": "X",
				"notBefore": before.AddDate(20, 0, 1).Format(time.RFC3339)})
			assert.Equal(t, []string{"notBefore"}, params(envelope(t, r, 400, "BadRequest")))
			assert.Equal(t, 0, f.hsmKeys(), "a refused create leaves no HSM object")
			assert.Equal(t, int64(0), f.quota(dts.QuotaRoots))

			// Without notAfter, notBefore + 20 years is cut to 20 years
			// from creation.
			m := f.root(map[string]any{"organisationName": "X", "notBefore": in18Months.Format(time.RFC3339)})
			after := time.Now().UTC()
			data := m["certificateData"].(map[string]any)
			assert.Equal(t, in18Months.Format(time.RFC3339), data["notBefore"])
			na, err := time.Parse(time.RFC3339, data["notAfter"].(string))
			require.NoError(t, err)
			assert.False(t, na.Before(before.AddDate(20, 0, 0)), "notAfter %s", na)
			assert.False(t, na.After(after.AddDate(20, 0, 0)), "notAfter %s is beyond 20 years from creation", na)
			cert := parsePEMCert(t, m["certificatePem"].(string))
			assert.Equal(t, na, cert.NotAfter.UTC())

			// A notAfter inside the bound with a future notBefore is kept.
			want := before.AddDate(20, 0, 0).Add(-time.Hour)
			m = f.root(map[string]any{"organisationName": "X", "notBefore": in18Months.Format(time.RFC3339),
				"notAfter": want.Format(time.RFC3339)})
			assert.Equal(t, want.Format(time.RFC3339), m["certificateData"].(map[string]any)["notAfter"])
		})
	}
}

// notYetValidCA is a self-signed CA certificate valid from 2040.
func notYetValidCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2040), Subject: pkix.Name{CommonName: "Future IACA",
		Country: []string{"NZ"}, Organization: []string{"Later Inc."}},
		NotBefore: time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestDTSUnmanagedRootNotYetValidIsRefused(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			r := f.do("POST", caPath, map[string]any{"certificatePem": string(notYetValidCA(t))})
			d := envelope(t, r, 400, "BadRequest")
			assert.Equal(t, []string{"certificatePem"}, params(d))
			assert.Contains(t, d[0]["msg"], "not valid yet")
			assert.Contains(t, d[0]["msg"], "2040-01-01T00:00:00Z")
			assert.Empty(t, f.do("GET", caPath, nil).Map(t)["data"], "nothing is stored")
			assert.Equal(t, int64(0), f.quota(dts.QuotaRoots))
			assert.Equal(t, 1, counter(t, f.env, "ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE", "FAIL"))

			// A root valid now is still registered.
			ca := testpki.NewCA(t, "Current IACA")
			r = f.do("POST", caPath, map[string]any{"certificatePem": string(ca.PEM())})
			require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		})
	}
}

// Without an IssuerAlternativeName the daemon refuses managed roots
// (503, its own code), before any key or quota is used; unmanaged roots,
// which carry their own, are still registered. A configured one is in
// the root and in the signers it issues.
func TestDTSManagedRootNeedsAnIssuerAltName(t *testing.T) {
	t.Run("unset", func(t *testing.T) {
		f := newDTS(t, "bolt", apitest.Options{DTS: []dts.Option{dts.IssuerAltName("")}})
		r := f.do("POST", caPath, map[string]any{"organisationName": "Example Inc."})
		d := mattrError(t, r, http.StatusServiceUnavailable, api.EcosystemCodeNoIssuerAltName)
		assert.Empty(t, d)
		msg := r.Map(t)["message"].(string)
		assert.Contains(t, msg, "issuer_alt_name")
		assert.Contains(t, msg, "HSMCA_PUBLIC_BASE_URL")
		assert.Equal(t, 0, f.hsmKeys(), "no HSM object is made")
		assert.Equal(t, int64(0), f.quota(dts.QuotaRoots), "no quota is used")
		assert.Equal(t, 1, counter(t, f.env, "ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE", "FAIL"))

		// Field errors still come first: the request is checked before
		// the daemon says it cannot serve it.
		envelope(t, f.do("POST", caPath, map[string]any{}), 400, "BadRequest")

		ca := testpki.NewCA(t, "External IACA")
		r = f.do("POST", caPath, map[string]any{"certificatePem": string(ca.PEM())})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	})
	t.Run("set", func(t *testing.T) {
		f := newDTS(t, "bolt")
		root := f.root(map[string]any{"organisationName": "Example Inc."})
		s := f.do("POST", signerPath, map[string]any{"caId": root["id"]})
		require.Equal(t, http.StatusCreated, s.Status, "%s", s.Body)
		for _, pemText := range []string{root["certificatePem"].(string), s.Map(t)["certificatePem"].(string)} {
			text := openssl(t, "x509", "-in", writeTemp(t, "c.pem", []byte(pemText)), "-noout", "-text")
			assert.Contains(t, text, "X509v3 Issuer Alternative Name")
			assert.Contains(t, text, "URI:"+testIAN)
		}
	})
}

// Every error of the ecosystem family carries details, a list: those of
// the handlers and those written before a handler runs (authentication,
// roles, unknown routes and methods, body limits, rate limits, an
// unavailable store).
func TestEcosystemErrorsAlwaysCarryDetails(t *testing.T) {
	// Enough for every request the cases make with the fixture's token;
	// a token of its own then runs out.
	const burst = 50
	f := newDTS(t, "bolt", apitest.Options{DTS: []dts.Option{dts.IssuerAltName(testIAN)}, Configure: func(o *api.Options) {
		o.RateLimit = api.RateLimit{RequestsPerSecond: testRate, Burst: burst}
		o.PublicRateLimit = api.PublicRateLimit{RequestsPerSecond: testRate, Burst: 3}
		o.MaxBodyBytes = 4096
	}})
	env := f.env
	reader := env.NewToken("t1", signer.RoleSigner)
	root := f.root(map[string]any{"organisationName": "Example Inc."})
	rootID := root["id"].(string)
	unmanaged := f.root(map[string]any{"certificatePem": string(testpki.NewCA(t, "External IACA").PEM())})["id"].(string)
	missing := "5b6f2c1e-3a4d-4e8f-9a0b-1c2d3e4f5a6b"
	big := `{"organisationName":"` + strings.Repeat("x", 8192) + `"}`

	cases := []struct {
		name    string
		do      func() *apitest.Response
		status  int
		code    string
		details int // -1: at least one
	}{
		{"invalid field", func() *apitest.Response { return f.do("POST", caPath, map[string]any{"country": "XX"}) }, 400, "BadRequest", -1},
		{"bad query", func() *apitest.Response { return f.do("GET", caPath+"?limit=0", nil) }, 400, "BadRequest", 1},
		{"not JSON", func() *apitest.Response { return f.do("POST", caPath, `{"organisationName":`) }, 400, "BadRequest", 0},
		{"not an object", func() *apitest.Response { return f.do("POST", caPath, `[1]`) }, 400, "BadRequest", 0},
		{"no credential", func() *apitest.Response { return env.Do("GET", caPath, "", nil) }, 401, "Unauthorized", 0},
		{"unknown token", func() *apitest.Response {
			return env.Do("GET", caPath, "hsmca_"+strings.Repeat("A", 43), nil)
		}, 401, "Unauthorized", 0},
		{"wrong role", func() *apitest.Response { return env.Do("GET", signerPath, reader, nil) }, 403, "Forbidden", 0},
		{"missing root", func() *apitest.Response { return f.do("GET", caPath+"/"+missing, nil) }, 404, "NotFound", 0},
		{"unmatched route", func() *apitest.Response { return f.do("GET", "/v1/ecosystems/certificates/nope", nil) }, 404, "NotFound", 0},
		{"no CRL", func() *apitest.Response {
			return env.Do("GET", caPath+"/"+unmanaged+"/revocation-list", "", nil)
		}, 404, api.EcosystemCodeNoCRL, 0},
		{"method not allowed", func() *apitest.Response { return f.do("PATCH", caPath, map[string]any{}) }, 405, "MethodNotAllowed", 0},
		{"unknown method", func() *apitest.Response { return f.do("BREW", caPath, nil) }, 501, "NotImplemented", 0},
		{"declared body too large", func() *apitest.Response { return f.do("POST", caPath, big) }, 413, "PayloadTooLarge", 0},
		{"streamed body too large", func() *apitest.Response { return chunked(t, env, f.tok, caPath, big) }, 413, "PayloadTooLarge", 0},
		{"not JSON media type", func() *apitest.Response {
			return env.Do("POST", caPath, f.tok, `{}`, "Content-Type", "text/plain")
		}, 415, "UnsupportedMediaType", 0},
		{"quota", func() *apitest.Response {
			f.root(map[string]any{"organisationName": "Y"})
			return f.do("POST", caPath, map[string]any{"organisationName": "Z"})
		}, 409, "Conflict", 0},
		{"wrong state", func() *apitest.Response {
			require.Equal(t, 200, f.do("PUT", caPath+"/"+rootID, map[string]any{"active": false}).Status)
			return f.do("POST", signerPath, map[string]any{"caId": rootID})
		}, 409, "Conflict", 0},
		{"public rate", func() *apitest.Response { return untilThrottled(t, env, "", caPath+"/"+rootID+"/revocation-list", 3) }, 429, "TooManyRequests", 0},
		{"credential rate", func() *apitest.Response {
			return untilThrottled(t, env, env.NewToken("t1", signer.RoleDTSProvider), caPath, burst)
		}, 429, "TooManyRequests", 0},
		{"store unavailable", func() *apitest.Response {
			require.NoError(t, env.Store.Close())
			return f.do("GET", caPath, nil)
		}, 503, "ServiceUnavailable", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.do()
			d := mattrError(t, r, tc.status, tc.code)
			if tc.details < 0 {
				assert.NotEmpty(t, d)
			} else {
				assert.Len(t, d, tc.details, "%s", r.Body)
			}
		})
	}
	assert.NotContains(t, env.Logs.String(), "panic")
}

// untilThrottled sends GET path until it answers 429, at most burst+1
// times; every answer before is a 200.
func untilThrottled(t *testing.T, env *apitest.Env, token, path string, burst int) *apitest.Response {
	t.Helper()
	for i := 0; i < burst; i++ {
		r := env.Do("GET", path, token, nil)
		if r.Status == http.StatusTooManyRequests {
			return r
		}
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	}
	return env.Do("GET", path, token, nil)
}

// chunked sends body without a declared length, so that only reading it
// finds it too large.
func chunked(t *testing.T, env *apitest.Env, token, path, body string) *apitest.Response {
	t.Helper()
	req, err := http.NewRequest("POST", env.Server.URL+path, io.MultiReader(strings.NewReader(body)))
	require.NoError(t, err)
	require.Equal(t, int64(0), req.ContentLength, "no declared length")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return &apitest.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}
