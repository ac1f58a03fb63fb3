package api_test

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/ccm/v1/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/pca"
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

// signAsCA signs a CA certificate for csrPEM's key under issuer, with
// pathLen as its pathLenConstraint (-1: none).
func (s *softCA) signAsCA(t *testing.T, csrPEM string, pathLen int) string {
	t.Helper()
	b, _ := pem.Decode([]byte(csrPEM))
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: pathLen, MaxPathLenZero: pathLen == 0,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.cert, csr.PublicKey, s.key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// pcaAssertPathLength checks that a CA reports the path length its
// certificate carries: null for no pathLenConstraint.
func pcaAssertPathLength(t *testing.T, p *pcaEnv, id string, shown any) {
	t.Helper()
	certPEM, _ := p.exportCA(id)
	cert := pcaParseCert(t, certPEM)
	require.True(t, cert.BasicConstraintsValid && cert.IsCA)
	if cert.MaxPathLen < 0 || (cert.MaxPathLen == 0 && !cert.MaxPathLenZero) {
		assert.Nil(t, shown, "%s: the certificate sets no pathLenConstraint", id)
		return
	}
	assert.Equal(t, float64(cert.MaxPathLen), shown, id)
}

// A ROOT's certificate sets no pathLenConstraint (the public service
// ignores path_length for roots), and the CA reports exactly that: a null
// path_length. Every CA reports what its certificate says, imported ones
// too, in show and list; subordinates' path length rules are unchanged.
func TestPCAPathLengthAgreesWithCertificate(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			root := p.createRoot("PL Root", map[string]any{"path_length": 2})
			rootPEM, _ := p.exportCA(root)
			assert.Equal(t, -1, pcaParseCert(t, rootPEM).MaxPathLen, "a root's certificate sets no pathLenConstraint")
			s := p.showSDK(root)
			assert.Nil(t, s.PathLength, "path_length 2 of a ROOT is ignored, and none is reported")
			r := p.showCA(root)
			require.Contains(t, r, "path_length")
			assert.Nil(t, r["path_length"])

			// The root still allows subordinates up to path length 6.
			six := p.createSub("PL Six", root, 6)
			pcaFail(t, p.do("POST", pcaCAs, map[string]any{"type": "SUBORDINATE", "distinguished_name": pcaFullDN("PL Seven"),
				"key_algorithm": "EC256", "signature_algorithm": "SHA256", "validity": pcaYears(1), "issuer_id": root, "path_length": 7}),
				http.StatusBadRequest, "PCA.00020001")
			five := p.createSub("PL Five", six, 5, map[string]any{"validity": pcaYears(4)})
			pcaFail(t, p.do("POST", pcaCAs, map[string]any{"type": "SUBORDINATE", "distinguished_name": pcaFullDN("PL Five Again"),
				"key_algorithm": "EC256", "signature_algorithm": "SHA256", "validity": pcaYears(1), "issuer_id": six, "path_length": 6}),
				http.StatusBadRequest, "PCA.00020305")

			// Imported CAs: with no constraint, and with one beyond 7.
			ext := newSoftCA(t)
			var imported []string
			for i, pl := range []int{-1, 9, 1} {
				id := p.createPending(fmt.Sprintf("PL Imported %d", i))
				csr := p.ok(p.do("GET", pcaCAs+"/"+id+"/csr", nil), http.StatusOK)["csr"].(string)
				p.ok(p.do("POST", pcaCAs+"/"+id+"/import", map[string]any{"certificate": ext.signAsCA(t, csr, pl),
					"certificate_chain": ext.pem()}), http.StatusNoContent)
				imported = append(imported, id)
			}
			assert.Nil(t, p.showCA(imported[0])["path_length"])
			assert.Equal(t, float64(9), p.showCA(imported[1])["path_length"])
			assert.Equal(t, float64(1), p.showCA(imported[2])["path_length"])
			// An unconstrained imported CA allows subordinates up to 6, like a root.
			p.createSub("PL Under Imported", imported[0], 6, map[string]any{"validity": map[string]any{"type": "MONTH", "value": 6}})
			p.createSub("PL Under Nine", imported[1], 6, map[string]any{"validity": map[string]any{"type": "MONTH", "value": 6}})

			pending := p.createPending("PL Pending", map[string]any{"path_length": 4})
			assert.Equal(t, float64(4), p.showCA(pending)["path_length"], "a PENDING CA has no certificate: the requested value, as before")

			// show and list agree, and every CA with a certificate reports it.
			m := p.ok(p.do("GET", pcaCAs+"?limit=100", nil), http.StatusOK)
			for _, raw := range m["certificate_authorities"].([]any) {
				ca := raw.(map[string]any)
				id := ca["ca_id"].(string)
				require.Contains(t, ca, "path_length")
				assert.Equal(t, p.showCA(id)["path_length"], ca["path_length"], id)
				if id != pending {
					pcaAssertPathLength(t, p, id, ca["path_length"])
				}
			}
			assert.Equal(t, float64(5), p.showCA(five)["path_length"])
		})
	}
}

func (p *pcaEnv) exportSDK(id string) (cert, chain string) {
	p.t.Helper()
	r := p.do("POST", pcaCAs+"/"+id+"/export", nil)
	require.Equal(p.t, http.StatusOK, r.Status, "body: %s", r.Body)
	var v model.ExportCertificateAuthorityCertificateResponse
	pcaDecodeSDK(p.t, r, &v)
	require.NotNil(p.t, v.Certificate)
	require.NotNil(p.t, v.CertificateChain)
	return *v.Certificate, *v.CertificateChain
}

// A CA's export carries its chain as the public service orders it,
// intermediates first and the root last; a root's chain is the root.
func TestPCAExportChainIncludesRoot(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			root := p.createRoot("Chain Root")
			sub := p.createSub("Chain Sub", root, 1)
			leafCA := p.createSub("Chain Issuing", sub, 0, map[string]any{"validity": pcaYears(4)})
			rootPEM, rootChain := p.exportSDK(root)
			assert.Equal(t, rootPEM, rootChain)
			rc := pcaParseCert(t, rootChain)
			require.NoError(t, rc.CheckSignatureFrom(rc), "the chain ends in the self-signed root")
			subPEM, subChain := p.exportSDK(sub)
			assert.Equal(t, rootPEM, subChain)
			_, issuingChain := p.exportSDK(leafCA)
			assert.Equal(t, subPEM+rootPEM, issuingChain)

			// A disabled root still exports, with the same chain.
			p.ok(p.do("POST", pcaCAs+"/"+root+"/disable", nil), http.StatusNoContent)
			_, again := p.exportSDK(root)
			assert.Equal(t, rootPEM, again)
		})
	}
}

// issueForPending has one of the tenant's CAs sign a PENDING CA's CSR
// (POST /v1/private-certificates/csr, INTERMEDIATE_CA) and returns the
// certificate's PEM (valid six months).
func (p *pcaEnv) issueForPending(issuer, pending string) string {
	p.t.Helper()
	csr := p.ok(p.do("GET", pcaCAs+"/"+pending+"/csr", nil), http.StatusOK)["csr"].(string)
	id := p.ok(p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": issuer, "csr": csr, "type": "INTERMEDIATE_CA",
		"validity": map[string]any{"type": "MONTH", "value": 6}}), http.StatusOK)["certificate_id"].(string)
	return p.ok(p.do("POST", pcaCerts+"/"+id+"/export", nil), http.StatusOK)["certificate"].(string)
}

// A PENDING CA imported with a certificate that one of the tenant's CAs
// issued names that CA as its issuer (issuer_id, issuer_name): its chain
// is then the tenant's, and revoking it puts it on that CA's CRL.
func TestPCAImportedFromTenantCANamesIssuer(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			// A decoy of the same name and a different key comes first.
			decoy := p.createRoot("Import Root")
			root := p.createRoot("Import Root", map[string]any{"crl_configuration": map[string]any{"enabled": true, "valid_days": 7}})
			sub := p.createSub("Import Sub", root, 2)
			rootPEM, _ := p.exportCA(root)
			subPEM, _ := p.exportCA(sub)

			// Without a chain: the tenant's chain.
			pending := p.createPending("Imported Under Root")
			p.ok(p.do("POST", pcaCAs+"/"+pending+"/import", map[string]any{"certificate": p.issueForPending(root, pending)}),
				http.StatusNoContent)
			s := p.showSDK(pending)
			require.NotNil(t, s.IssuerId)
			assert.Equal(t, root, *s.IssuerId)
			assert.NotEqual(t, decoy, *s.IssuerId)
			require.NotNil(t, s.IssuerName)
			assert.Equal(t, "Import Root", *s.IssuerName)
			assert.Equal(t, "IMPORT", *s.GenMode)
			l := p.listSDK("")[pending]
			assert.Equal(t, root, l.IssuerId)
			assert.Equal(t, "Import Root", l.IssuerName)
			cert, chain := p.exportSDK(pending)
			assert.Equal(t, rootPEM, chain, "the tenant's chain above it")
			leaf := p.issueLeaf(pending, "under-imported.example.com")
			ex := p.ok(p.do("POST", pcaCerts+"/"+leaf+"/export", nil), http.StatusOK)
			assert.Equal(t, cert+rootPEM, ex["certificate_chain"])

			// With the chain supplied: that chain, and the issuer named.
			other := p.createPending("Imported Under Sub")
			p.ok(p.do("POST", pcaCAs+"/"+other+"/import", map[string]any{"certificate": p.issueForPending(sub, other),
				"certificate_chain": subPEM + rootPEM}), http.StatusNoContent)
			o := p.showCA(other)
			assert.Equal(t, sub, o["issuer_id"])
			assert.Equal(t, "Import Sub", o["issuer_name"])
			_, chain = p.exportSDK(other)
			assert.Equal(t, subPEM+rootPEM, chain)

			// Revoking the imported CA lists it on its issuer's CRL.
			before := pcaFetchCRL(t, p, root)
			p.ok(p.do("POST", pcaCAs+"/"+pending+"/revoke", map[string]any{"reason": "KEY_COMPROMISE"}), http.StatusNoContent)
			after := pcaFetchCRL(t, p, root)
			assert.Equal(t, 1, after.Number.Cmp(before.Number))
			serial := pcaParseCert(t, cert).SerialNumber
			found := false
			for _, e := range after.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(serial) == 0 {
					found = true
					assert.Equal(t, 1, e.ReasonCode)
				}
			}
			assert.True(t, found, "the revoked imported CA is on its issuer's CRL")
		})
	}
}

// The name constraints above a tenant CA bind a CA it issued that was
// imported without a chain: the walk goes on through the tenant's CAs.
func TestPCAImportedFromTenantCAKeepsConstraints(t *testing.T) {
	p := newPCA(t, "bolt")
	ext := newSoftCA(t)
	a := p.importConstrained("Constrained A", ext, func(c *x509.Certificate) {
		c.PermittedDNSDomainsCritical = true
		c.PermittedDNSDomains = []string{"example.com"}
	}, true)
	b := p.createPending("Imported Under A")
	p.ok(p.do("POST", pcaCAs+"/"+b+"/import", map[string]any{"certificate": p.issueForPending(a, b)}), http.StatusNoContent)
	assert.Equal(t, a, p.showCA(b)["issuer_id"])
	p.issueLeaf(b, "www.example.com")
	pcaFail(t, p.do("POST", pcaCerts, map[string]any{"issuer_id": b, "distinguished_name": map[string]any{"common_name": "evil.org"},
		"validity":                  map[string]any{"type": "DAY", "value": 30},
		"subject_alternative_names": []map[string]any{{"type": "DNS", "value": "evil.org"}}}),
		http.StatusBadRequest, "PCA.00020313")
}

// Each quota route reports its own resource, decoded by the SDK's model of
// that call, with the tenant's use and the configured limit.
func TestPCAQuotaRoutes(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend, apitest.Options{Engine: func(o *signer.Options) {
				o.Quotas = map[string]int64{pca.QuotaCAs: 7, pca.QuotaCertificates: 50}
			}})
			caQuota := func() model.Resources {
				r := p.do("GET", pcaCAs+"/quotas", nil)
				require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
				var v model.ShowCertificateAuthorityQuotaResponse
				pcaDecodeSDK(t, r, &v)
				require.NotNil(t, v.Quotas)
				require.Len(t, v.Quotas.Resources, 1, "only the CA quota: %s", r.Body)
				return v.Quotas.Resources[0]
			}
			certQuota := func() model.Resources {
				r := p.do("GET", pcaCerts+"/quotas", nil)
				require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
				var v model.ShowCertificateQuotaResponse
				pcaDecodeSDK(t, r, &v)
				require.NotNil(t, v.Quotas)
				require.Len(t, v.Quotas.Resources, 1, "only the certificate quota: %s", r.Body)
				return v.Quotas.Resources[0]
			}
			assert.Equal(t, model.Resources{Type: "CERTIFICATE_AUTHORITY", Used: 0, Quota: 7}, caQuota())
			assert.Equal(t, model.Resources{Type: "CERTIFICATE", Used: 0, Quota: 50}, certQuota())
			root := p.createRoot("Quota Root")
			p.createPending("Quota Pending")
			p.issueLeaf(root, "q.example.com")
			assert.Equal(t, model.Resources{Type: "CERTIFICATE_AUTHORITY", Used: 2, Quota: 7}, caQuota())
			assert.Equal(t, model.Resources{Type: "CERTIFICATE", Used: 1, Quota: 50}, certQuota())

			// Another tenant's use is its own.
			other := &pcaEnv{Env: p.Env, t: t, tok: p.NewToken("t2", "admin")}
			r := other.do("GET", pcaCAs+"/quotas", nil)
			require.Equal(t, http.StatusOK, r.Status)
			var v model.ShowCertificateAuthorityQuotaResponse
			pcaDecodeSDK(t, r, &v)
			assert.Equal(t, []model.Resources{{Type: "CERTIFICATE_AUTHORITY", Used: 0, Quota: 7}}, v.Quotas.Resources)
		})
	}
}
