package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/ccm/v1/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
)

// The answers of the CCM routes decode into the official Go SDK's models
// (github.com/huaweicloud/huaweicloud-sdk-go-v3, services/ccm/v1/model),
// with no field the model lacks.

// pcaDecodeSDK decodes an answer into an SDK model, refusing fields the
// model does not know.
func pcaDecodeSDK(t *testing.T, r *apitest.Response, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v), "body: %s", r.Body)
}

func (p *pcaEnv) showSDK(id string) *model.ShowCertificateAuthorityResponse {
	p.t.Helper()
	r := p.do("GET", pcaCAs+"/"+id, nil)
	require.Equal(p.t, http.StatusOK, r.Status, "body: %s", r.Body)
	var v model.ShowCertificateAuthorityResponse
	pcaDecodeSDK(p.t, r, &v)
	return &v
}

func (p *pcaEnv) listSDK(query string) map[string]model.CertificateAuthorities {
	p.t.Helper()
	r := p.do("GET", pcaCAs+query, nil)
	require.Equal(p.t, http.StatusOK, r.Status, "body: %s", r.Body)
	var v model.ListCertificateAuthorityResponse
	pcaDecodeSDK(p.t, r, &v)
	require.NotNil(p.t, v.CertificateAuthorities)
	out := map[string]model.CertificateAuthorities{}
	for _, ca := range *v.CertificateAuthorities {
		out[ca.CaId] = ca
	}
	return out
}

// pcaRawGet sends a GET with a chosen Host and headers (the test client
// otherwise always sends the server's address as Host).
func pcaRawGet(t *testing.T, p *pcaEnv, path, host string, headers ...string) []byte {
	t.Helper()
	req, err := http.NewRequest("GET", p.Server.URL+path, nil)
	require.NoError(t, err)
	req.Host = host
	req.Header.Set("X-Auth-Token", p.tok)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	return body
}

// crl_configuration keeps crl_name and obs_bucket_name as given at
// creation and by crl/enable, and shows them in show and list;
// crl_dis_point is the absolute URL the CRL is served at.
func TestPCACRLConfigurationEchoed(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			root := p.createRoot("Named CRL Root", map[string]any{"crl_configuration": map[string]any{
				"enabled": true, "valid_days": 9, "crl_name": "root-ca_2025.v1", "obs_bucket_name": "pki-crls.example"}})
			dp := p.Server.URL + pcaCAs + "/" + root + "/crl"
			s := p.showSDK(root)
			require.NotNil(t, s.CrlConfiguration)
			assert.Equal(t, model.ListCrlConfiguration{Enabled: true, CrlName: "root-ca_2025.v1",
				ObsBucketName: "pki-crls.example", ValidDays: 9, CrlDisPoint: dp}, *s.CrlConfiguration)
			assert.Equal(t, *s.CrlConfiguration, *p.listSDK("")[root].CrlConfiguration)

			// The distribution point serves the CRL, to anyone.
			resp, err := http.Get(s.CrlConfiguration.CrlDisPoint)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "application/pkix-crl", resp.Header.Get("Content-Type"))

			// Disabling keeps the names; no distribution point then.
			p.ok(p.do("POST", pcaCAs+"/"+root+"/crl/disable", nil), http.StatusNoContent)
			assert.Equal(t, model.ListCrlConfiguration{CrlName: "root-ca_2025.v1", ObsBucketName: "pki-crls.example",
				ValidDays: 9}, *p.showSDK(root).CrlConfiguration)

			// crl/enable with the SDK's body: without crl_name the name is the
			// CA's id (the public service's default); the bucket is replaced.
			body := model.EnableCertificateAuthorityCrlRequestBody{ObsBucketName: "other-bucket", ValidDays: 12}
			p.ok(p.do("POST", pcaCAs+"/"+root+"/crl/enable", body), http.StatusNoContent)
			assert.Equal(t, model.ListCrlConfiguration{Enabled: true, CrlName: root, ObsBucketName: "other-bucket",
				ValidDays: 12, CrlDisPoint: dp}, *p.showSDK(root).CrlConfiguration)
			name := "新的-crl"
			body = model.EnableCertificateAuthorityCrlRequestBody{CrlName: &name, ValidDays: 7}
			p.ok(p.do("POST", pcaCAs+"/"+root+"/crl/enable", body), http.StatusNoContent)
			assert.Equal(t, model.ListCrlConfiguration{Enabled: true, CrlName: name, ValidDays: 7, CrlDisPoint: dp},
				*p.showSDK(root).CrlConfiguration)

			// A CA without CRL shows empty names and no distribution point;
			// names given with the CRL off are kept.
			plain := p.createRoot("Plain Root")
			assert.Equal(t, model.ListCrlConfiguration{ValidDays: 7}, *p.showSDK(plain).CrlConfiguration)
			pending := p.createPending("Pending Named", map[string]any{"crl_configuration": map[string]any{
				"enabled": false, "crl_name": "later", "obs_bucket_name": "bkt"}})
			assert.Equal(t, model.ListCrlConfiguration{CrlName: "later", ObsBucketName: "bkt", ValidDays: 7},
				*p.showSDK(pending).CrlConfiguration)

			// Names are checked on creation and on enable; nothing changes on
			// a refusal.
			for field, bad := range map[string]string{
				"crl_name": ".hidden", "obs_bucket_name": "Upper-Case",
			} {
				cfg := map[string]any{"enabled": true, "valid_days": 7, field: bad}
				pcaFail(t, p.do("POST", pcaCAs, map[string]any{"type": "ROOT", "distinguished_name": pcaFullDN("Bad " + field),
					"key_algorithm": "EC256", "signature_algorithm": "SHA256", "validity": pcaYears(1),
					"crl_configuration": cfg}), http.StatusBadRequest, "PCA.00020001")
				msg := pcaFail(t, p.do("POST", pcaCAs+"/"+root+"/crl/enable", map[string]any{"valid_days": 7, field: bad}),
					http.StatusBadRequest, "PCA.00020001")
				assert.Contains(t, msg, field)
			}
			assert.Equal(t, name, p.showSDK(root).CrlConfiguration.CrlName)
		})
	}
}

// The names' rules: crl_name 1..64 letters, digits, '-', '_', '.' (not
// leading); obs_bucket_name Huawei OBS's bucket naming rules.
func TestPCACRLNameRules(t *testing.T) {
	p := newPCA(t, "bolt")
	root := p.createRoot("Rules Root")
	enable := func(field, v string) *apitest.Response {
		return p.do("POST", pcaCAs+"/"+root+"/crl/enable", map[string]any{"valid_days": 7, field: v})
	}
	for _, ok := range []string{"a", "crl", "Root_CA-1.crl", "根证书", strings.Repeat("x", 64)} {
		p.ok(enable("crl_name", ok), http.StatusNoContent)
	}
	for _, bad := range []string{".crl", "a/b", "a b", "a\tb", "..", strings.Repeat("x", 65), "a%2fb", "crl\u200b"} {
		pcaFail(t, enable("crl_name", bad), http.StatusBadRequest, "PCA.00020001")
	}
	for _, ok := range []string{"abc", "my-bucket", "my.bucket.1", "0bucket9", strings.Repeat("b", 63)} {
		p.ok(enable("obs_bucket_name", ok), http.StatusNoContent)
	}
	for _, bad := range []string{"ab", strings.Repeat("b", 64), "-bucket", "bucket-", ".bucket", "bucket.",
		"my..bucket", "my-.bucket", "my.-bucket", "My-Bucket", "my_bucket", "192.168.1.10", "bück"} {
		pcaFail(t, enable("obs_bucket_name", bad), http.StatusBadRequest, "PCA.00020001")
	}
}

// crl_dis_point is absolute: under public_base_url when it is set, else
// built from the request (scheme from TLS or, behind a trusted proxy,
// X-Forwarded-Proto; host from Host).
func TestPCACRLDistributionPointBase(t *testing.T) {
	dpOf := func(body []byte) string {
		var v model.ShowCertificateAuthorityResponse
		require.NoError(t, json.Unmarshal(body, &v))
		return v.CrlConfiguration.CrlDisPoint
	}
	crlOn := map[string]any{"crl_configuration": map[string]any{"enabled": true, "valid_days": 7}}

	t.Run("configured", func(t *testing.T) {
		p := newPCA(t, "bolt", apitest.Options{Configure: func(o *api.Options) {
			o.PublicBaseURL = "https://ca.example.com/pki"
		}})
		root := p.createRoot("Base Root", crlOn)
		want := "https://ca.example.com/pki" + pcaCAs + "/" + root + "/crl"
		assert.Equal(t, want, p.showSDK(root).CrlConfiguration.CrlDisPoint)
		assert.Equal(t, want, p.listSDK("")[root].CrlConfiguration.CrlDisPoint)
		// The request's Host and headers do not matter then.
		assert.Equal(t, want, dpOf(pcaRawGet(t, p, pcaCAs+"/"+root, "elsewhere.example", "X-Forwarded-Proto", "http")))
	})
	t.Run("from the request", func(t *testing.T) {
		p := newPCA(t, "bolt")
		root := p.createRoot("Request Root", crlOn)
		path := pcaCAs + "/" + root + "/crl"
		assert.Equal(t, "http://ca.example.net:8443"+path, dpOf(pcaRawGet(t, p, pcaCAs+"/"+root, "ca.example.net:8443")))
		// Without trusted-proxy mode a client's X-Forwarded-Proto is ignored.
		assert.Equal(t, "http://ca.example.net"+path,
			dpOf(pcaRawGet(t, p, pcaCAs+"/"+root, "ca.example.net", "X-Forwarded-Proto", "https")))
	})
	t.Run("behind a trusted proxy", func(t *testing.T) {
		p := newPCA(t, "bolt", apitest.Options{Configure: func(o *api.Options) { o.TrustedProxy = true }})
		root := p.createRoot("Proxied Root", crlOn)
		path := pcaCAs + "/" + root + "/crl"
		show := pcaCAs + "/" + root
		assert.Equal(t, "https://ca.example.org"+path, dpOf(pcaRawGet(t, p, show, "ca.example.org", "X-Forwarded-Proto", "https")))
		// The proxy's own entry is the last one.
		assert.Equal(t, "https://ca.example.org"+path, dpOf(pcaRawGet(t, p, show, "ca.example.org", "X-Forwarded-Proto", "http, HTTPS")))
		assert.Equal(t, "http://ca.example.org"+path, dpOf(pcaRawGet(t, p, show, "ca.example.org", "X-Forwarded-Proto", "https",
			"X-Forwarded-Proto", "http")))
		// Anything else falls back to the connection's scheme.
		assert.Equal(t, "http://ca.example.org"+path, dpOf(pcaRawGet(t, p, show, "ca.example.org", "X-Forwarded-Proto", "gopher")))
		assert.Equal(t, "http://ca.example.org"+path, dpOf(pcaRawGet(t, p, show, "ca.example.org")))
	})
}
