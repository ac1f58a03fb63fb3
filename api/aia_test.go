package api_test

import (
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer/dts"
)

// fetchURL GETs an absolute URL taken from a certificate, as a relying
// party does: no credential.
func fetchURL(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

// fetchIssuer follows a certificate's one caIssuers URL and returns the
// issuer certificate served there (DER, application/pkix-cert).
func fetchIssuer(t *testing.T, c *x509.Certificate) *x509.Certificate {
	t.Helper()
	require.Len(t, c.IssuingCertificateURL, 1, "one caIssuers URL in %s", c.Subject)
	resp, body := fetchURL(t, c.IssuingCertificateURL[0])
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, "application/pkix-cert", resp.Header.Get("Content-Type"))
	assert.Contains(t, resp.Header.Get("Cache-Control"), "public")
	issuer, err := x509.ParseCertificate(body)
	require.NoError(t, err, "caIssuers serves one DER certificate")
	require.NoError(t, c.CheckSignatureFrom(issuer), "the certificate served is its issuer's")
	return issuer
}

// assertNoIssuerURLs: a root, or any certificate signed without a public
// base URL.
func assertNoIssuerURLs(t *testing.T, c *x509.Certificate) {
	t.Helper()
	assert.Empty(t, c.CRLDistributionPoints, "%s: no CRL distribution point", c.Subject)
	assert.Empty(t, c.IssuingCertificateURL, "%s: no caIssuers", c.Subject)
	assert.Empty(t, c.OCSPServer, "%s: no OCSP", c.Subject)
	for _, e := range c.Extensions {
		assert.NotEqual(t, "2.5.29.31", e.Id.String(), "%s: cRLDistributionPoints", c.Subject)
		assert.NotEqual(t, "1.3.6.1.5.5.7.1.1", e.Id.String(), "%s: authorityInfoAccess", c.Subject)
	}
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// A relying party holding only the PCA root (its trust anchor) and a leaf
// completes the chain and checks revocation through the URLs in the
// certificates alone: Go's verifier with the intermediate fetched from
// the leaf's caIssuers URL, and OpenSSL downloading the CRLs from the
// distribution points (-crl_download), before and after a revocation.
func TestPCAIssuerURLsReachedByRelyingParties(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend, apitest.Options{PublicBaseURL: apitest.SelfURL})
			base := p.Server.URL
			crlOn := map[string]any{"crl_configuration": map[string]any{"enabled": true, "valid_days": 7}}
			root := p.createRoot("AIA Root", crlOn)
			sub := p.createSub("AIA Issuing CA", root, 0, crlOn)

			rootPEM, _ := p.exportCA(root)
			rootCert := pcaParseCert(t, rootPEM)
			assertNoIssuerURLs(t, rootCert)
			subPEM, _ := p.exportCA(sub)
			subCert := pcaParseCert(t, subPEM)
			assert.Equal(t, []string{base + "/v1/private-certificate-authorities/" + root + "/crl"}, subCert.CRLDistributionPoints)
			assert.Equal(t, []string{base + "/v1/private-certificate-authorities/" + root + "/certificate"}, subCert.IssuingCertificateURL)
			assert.Empty(t, subCert.OCSPServer, "OCSP is off")
			crlView := p.showCA(root)["crl_configuration"].(map[string]any)
			assert.Equal(t, subCert.CRLDistributionPoints[0], crlView["crl_dis_point"], "the root's crl_dis_point is its certificates' DP")

			// Leaves by key generation and by CSR name the subordinate.
			leafGen := p.issueLeaf(sub, "www.example.com")
			key := ecKey(t, elliptic.P256())
			leafCSR := p.ok(p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": sub,
				"csr": csrPEM(t, key, "api.example.com", "api.example.com"), "validity": map[string]any{"type": "DAY", "value": 30}}),
				http.StatusOK)["certificate_id"].(string)
			dir := t.TempDir()
			rootF := pcaWriteFile(t, dir, "root.pem", []byte(rootPEM))
			leaves := map[string]*x509.Certificate{}
			for name, id := range map[string]string{"generated key": leafGen, "csr": leafCSR} {
				ex := p.ok(p.do("POST", pcaCerts+"/"+id+"/export", map[string]any{"type": "OTHER"}), http.StatusOK)
				leaf := pcaParseCert(t, ex["certificate"].(string))
				leaves[id] = leaf
				assert.Equal(t, []string{base + "/v1/private-certificate-authorities/" + sub + "/crl"}, leaf.CRLDistributionPoints, name)
				assert.Equal(t, []string{base + "/v1/private-certificate-authorities/" + sub + "/certificate"}, leaf.IssuingCertificateURL, name)
				assert.Empty(t, leaf.OCSPServer, name)

				// Go: the chain built from AIA, up to the trust anchor.
				inter := fetchIssuer(t, leaf)
				assert.Equal(t, subCert.Raw, inter.Raw)
				assert.Equal(t, rootCert.Raw, fetchIssuer(t, inter).Raw)
				roots, inters := x509.NewCertPool(), x509.NewCertPool()
				roots.AddCert(rootCert)
				inters.AddCert(inter)
				chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters})
				require.NoError(t, err, name)
				require.Len(t, chains[0], 3, name)

				// OpenSSL: the intermediate as fetched (DER), every CRL
				// downloaded from the distribution points.
				interDER := pcaWriteFile(t, dir, "inter-"+id+".der", inter.Raw)
				interF := dir + "/inter-" + id + ".pem"
				out, err := pcaOpenSSL(t, "x509", "-inform", "DER", "-in", interDER, "-out", interF)
				require.NoError(t, err, out)
				// -crl_check checks the certificate verified against the
				// CRL named by its own distribution point: the leaf on
				// the subordinate's CRL, then the subordinate on the
				// root's (a root's own status is no CRL's business).
				leafF := pcaWriteFile(t, dir, "leaf-"+id+".pem", pemOf(leaf))
				out, err = pcaOpenSSL(t, "verify", "-crl_check", "-crl_download", "-CAfile", rootF, "-untrusted", interF, leafF)
				require.NoError(t, err, out)
				assert.Contains(t, out, "OK", name)
				out, err = pcaOpenSSL(t, "verify", "-crl_check", "-crl_download", "-CAfile", rootF, interF)
				require.NoError(t, err, out)
				assert.Contains(t, out, "OK", name)
			}

			// Revoked, the leaf fails OpenSSL's check on the CRL it
			// downloads; the CRL fetched by the DP URL lists it.
			p.ok(p.do("POST", pcaCerts+"/"+leafCSR+"/revoke", map[string]any{"reason": "KEY_COMPROMISE"}), http.StatusNoContent)
			out, err := pcaOpenSSL(t, "verify", "-crl_check", "-crl_download", "-CAfile", rootF,
				"-untrusted", dir+"/inter-"+leafCSR+".pem", dir+"/leaf-"+leafCSR+".pem")
			require.Error(t, err, out)
			assert.Contains(t, out, "certificate revoked")
			resp, der := fetchURL(t, leaves[leafCSR].CRLDistributionPoints[0])
			require.Equal(t, http.StatusOK, resp.StatusCode)
			crlF := pcaWriteFile(t, dir, "sub.crl", der)
			out, err = pcaOpenSSL(t, "verify", "-crl_check", "-CRLfile", crlF, "-CAfile", rootF,
				"-untrusted", dir+"/inter-"+leafCSR+".pem", dir+"/leaf-"+leafCSR+".pem")
			require.Error(t, err, out)
			assert.Contains(t, out, "certificate revoked")
			out, err = pcaOpenSSL(t, "verify", "-crl_check", "-crl_download", "-CAfile", rootF,
				"-untrusted", dir+"/inter-"+leafGen+".pem", dir+"/leaf-"+leafGen+".pem")
			require.NoError(t, err, out)
		})
	}
}

// Every way a PCA CA signs a certificate names its URLs: a subordinate
// activated after creation, an external CA certified from its CSR; a CA
// without a CRL names its certificate but no distribution point.
func TestPCAIssuerURLsOnEveryIssuance(t *testing.T) {
	p := newPCA(t, "bolt", apitest.Options{PublicBaseURL: apitest.SelfURL})
	base := p.Server.URL + "/v1/private-certificate-authorities/"
	root := p.createRoot("URL Root", map[string]any{"crl_configuration": map[string]any{"enabled": true, "valid_days": 7}})

	pending := p.createPending("Activated CA")
	p.ok(p.do("POST", pcaCAs+"/"+pending+"/activate", map[string]any{"signature_algorithm": "SHA256",
		"validity": pcaYears(1), "path_length": 0, "issuer_id": root}), http.StatusNoContent)
	certPEM, _ := p.exportCA(pending)
	activated := pcaParseCert(t, certPEM)
	assert.Equal(t, []string{base + root + "/crl"}, activated.CRLDistributionPoints)
	assert.Equal(t, []string{base + root + "/certificate"}, activated.IssuingCertificateURL)

	key := ecKey(t, elliptic.P256())
	id := p.ok(p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": root, "type": "INTERMEDIATE_CA",
		"csr": csrPEM(t, key, "External CA"), "validity": pcaYears(1)}), http.StatusOK)["certificate_id"].(string)
	ex := p.ok(p.do("POST", pcaCerts+"/"+id+"/export", map[string]any{"type": "OTHER"}), http.StatusOK)
	ext := pcaParseCert(t, ex["certificate"].(string))
	assert.True(t, ext.IsCA)
	assert.Equal(t, []string{base + root + "/crl"}, ext.CRLDistributionPoints)
	assert.Equal(t, []string{base + root + "/certificate"}, ext.IssuingCertificateURL)

	// The activated CA publishes no CRL: its leaves name its certificate
	// only, which is served.
	leafID := p.issueLeaf(pending, "nocrl.example.com")
	ex = p.ok(p.do("POST", pcaCerts+"/"+leafID+"/export", map[string]any{"type": "OTHER"}), http.StatusOK)
	leaf := pcaParseCert(t, ex["certificate"].(string))
	assert.Empty(t, leaf.CRLDistributionPoints)
	assert.Equal(t, []string{base + pending + "/certificate"}, leaf.IssuingCertificateURL)
	assert.Equal(t, activated.Raw, fetchIssuer(t, leaf).Raw)
}

// Without a public base URL, certificates are signed as before: no
// distribution point, no AIA, on subordinates and leaves alike.
func TestPCANoIssuerURLsWithoutPublicBaseURL(t *testing.T) {
	p := newPCA(t, "bolt")
	crlOn := map[string]any{"crl_configuration": map[string]any{"enabled": true, "valid_days": 7}}
	root := p.createRoot("Plain Root", crlOn)
	sub := p.createSub("Plain CA", root, 0, crlOn)
	subPEM, _ := p.exportCA(sub)
	assertNoIssuerURLs(t, pcaParseCert(t, subPEM))
	leafID := p.issueLeaf(sub, "plain.example.com")
	ex := p.ok(p.do("POST", pcaCerts+"/"+leafID+"/export", map[string]any{"type": "OTHER"}), http.StatusOK)
	assertNoIssuerURLs(t, pcaParseCert(t, ex["certificate"].(string)))
}

// The caIssuers route: no credential, DER, the CCM envelope for what it
// does not serve, limited per client address like the CRL route.
func TestPCACACertificateRoute(t *testing.T) {
	p := newPCA(t, "bolt", apitest.Options{Configure: func(o *api.Options) {
		o.PublicRateLimit = api.PublicRateLimit{RequestsPerSecond: 0.001, Burst: 3}
	}})
	root := p.createRoot("Route Root")
	rootPEM, _ := p.exportCA(root)
	r := p.Do("GET", pcaCAs+"/"+root+"/certificate", "", nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.Equal(t, "application/pkix-cert", r.Header.Get("Content-Type"))
	assert.Equal(t, pcaParseCert(t, rootPEM).Raw, r.Body)

	pending := p.createPending("Pending CA")
	msg := pcaFail(t, p.Do("GET", pcaCAs+"/"+pending+"/certificate", "", nil), http.StatusBadRequest, "PCA.10010002")
	assert.Contains(t, msg, "does not exist")
	pcaFail(t, p.Do("GET", pcaCAs+"/not-a-uuid/certificate", "", nil), http.StatusBadRequest, "PCA.10010002")
	r = p.Do("GET", pcaCAs+"/"+root+"/certificate", "", nil)
	require.Equal(t, http.StatusTooManyRequests, r.Status, "%s", r.Body)
	assert.NotEmpty(t, r.Header.Get("Retry-After"))
}

// A DTS VICAL signer names its root's CRL and certificate; a relying
// party holding the root verifies it with OpenSSL downloading the CRL,
// and with Go, and sees it revoked once the signer is deleted. The root
// names nothing; without a public base URL the signer names nothing.
func TestDTSIssuerURLsReachedByRelyingParties(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend, apitest.Options{PublicBaseURL: apitest.SelfURL, DTS: []dts.Option{dts.IssuerAltName(testIAN)}})
			base := f.env.Server.URL + caPath + "/"
			root := f.root(map[string]any{"organisationName": "Example Inc."})
			rootID := root["id"].(string)
			rootCert := pcaParseCert(t, root["certificatePem"].(string))
			assertNoIssuerURLs(t, rootCert)

			r := f.do("POST", signerPath, map[string]any{"caId": rootID})
			require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
			sm := r.Map(t)
			sc := pcaParseCert(t, sm["certificatePem"].(string))
			assert.Equal(t, []string{base + rootID + "/revocation-list"}, sc.CRLDistributionPoints)
			assert.Equal(t, []string{base + rootID + "/certificate"}, sc.IssuingCertificateURL)
			assert.Empty(t, sc.OCSPServer)
			assert.Equal(t, rootCert.Raw, fetchIssuer(t, sc).Raw)
			roots := x509.NewCertPool()
			roots.AddCert(rootCert)
			// A VICAL signer's extended key usage is ISO 18013-5's, not TLS's.
			_, err := sc.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			require.NoError(t, err)

			dir := t.TempDir()
			rootF := pcaWriteFile(t, dir, "root.pem", pemOf(rootCert))
			signerF := pcaWriteFile(t, dir, "signer.pem", pemOf(sc))
			out, err := pcaOpenSSL(t, "verify", "-crl_check", "-crl_download", "-CAfile", rootF, signerF)
			require.NoError(t, err, out)
			assert.Contains(t, out, "OK")

			require.Equal(t, http.StatusNoContent, f.do("DELETE", signerPath+"/"+sm["id"].(string), nil).Status)
			out, err = pcaOpenSSL(t, "verify", "-crl_check", "-crl_download", "-CAfile", rootF, signerF)
			require.Error(t, err, out)
			assert.Contains(t, out, "certificate revoked")
		})
	}

	t.Run("without public base URL", func(t *testing.T) {
		f := newDTS(t, "bolt")
		root := f.root(map[string]any{"organisationName": "Example Inc."})
		r := f.do("POST", signerPath, map[string]any{"caId": root["id"]})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		assertNoIssuerURLs(t, pcaParseCert(t, r.Map(t)["certificatePem"].(string)))
	})
}

// The DTS caIssuers route: a managed root's certificate to anyone; an
// unknown id and an uploaded root are not found, in the native envelope.
func TestDTSRootCertificateRoute(t *testing.T) {
	f := newDTS(t, "bolt")
	root := f.root(map[string]any{"organisationName": "Example Inc."})
	r := f.env.Do("GET", caPath+"/"+root["id"].(string)+"/certificate", "", nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.Equal(t, "application/pkix-cert", r.Header.Get("Content-Type"))
	assert.Equal(t, pcaParseCert(t, root["certificatePem"].(string)).Raw, r.Body)

	envelope(t, f.env.Do("GET", caPath+"/00000000-0000-4000-8000-000000000000/certificate", "", nil), 404, "NotFound")
	envelope(t, f.env.Do("GET", caPath+"/nope/certificate", "", nil), 404, "NotFound")
	u := f.do("POST", caPath, map[string]any{"certificatePem": string(testpki.NewCA(t, "External IACA").PEM())})
	require.Equal(t, http.StatusCreated, u.Status, "%s", u.Body)
	envelope(t, f.env.Do("GET", caPath+"/"+u.Map(t)["id"].(string)+"/certificate", "", nil), 404, "NotFound")
}

// Under an intermediate (MATTR's 3-tier model) the intermediate names its
// root's URLs and each signer its intermediate's: openssl completes the
// chain and checks both CRLs from the URLs in the certificates alone.
func TestDTSIntermediateIssuerURLsReachedByRelyingParties(t *testing.T) {
	f := newDTS(t, "bolt", apitest.Options{PublicBaseURL: apitest.SelfURL, DTS: []dts.Option{dts.IssuerAltName(testIAN)}})
	base := f.env.Server.URL + caPath + "/"
	root := f.root(map[string]any{"organisationName": "Example Inc.", "useIntermediateCa": true})
	rootID := root["id"].(string)
	rootCert := pcaParseCert(t, root["certificatePem"].(string))
	m := f.intermediate(rootID, map[string]any{"usages": []string{"VICAL"}})
	interID := m["id"].(string)
	ic := pcaParseCert(t, m["certificatePem"].(string))
	assert.Equal(t, []string{base + rootID + "/revocation-list"}, ic.CRLDistributionPoints)
	assert.Equal(t, []string{base + rootID + "/certificate"}, ic.IssuingCertificateURL)

	r := f.do("POST", signerPath, map[string]any{"intermediateCaId": interID})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	sm := r.Map(t)
	sc := pcaParseCert(t, sm["certificatePem"].(string))
	interBase := base + rootID + "/intermediate/" + interID
	assert.Equal(t, []string{interBase + "/revocation-list"}, sc.CRLDistributionPoints)
	assert.Equal(t, []string{interBase + "/certificate"}, sc.IssuingCertificateURL)
	fetched := fetchIssuer(t, sc)
	assert.Equal(t, ic.Raw, fetched.Raw)
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(rootCert)
	inters.AddCert(fetched)
	_, err := sc.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err)

	dir := t.TempDir()
	rootF := pcaWriteFile(t, dir, "root.pem", pemOf(rootCert))
	interF := pcaWriteFile(t, dir, "inter.pem", pemOf(fetched))
	signerF := pcaWriteFile(t, dir, "signer.pem", pemOf(sc))
	out, err := pcaOpenSSL(t, "verify", "-crl_check", "-crl_download", "-CAfile", rootF, "-untrusted", interF, signerF)
	require.NoError(t, err, out)
	out, err = pcaOpenSSL(t, "verify", "-crl_check", "-crl_download", "-CAfile", rootF, interF)
	require.NoError(t, err, out)
	require.Equal(t, http.StatusNoContent, f.do("DELETE", signerPath+"/"+sm["id"].(string), nil).Status)
	out, err = pcaOpenSSL(t, "verify", "-crl_check", "-crl_download", "-CAfile", rootF, "-untrusted", interF, signerF)
	require.Error(t, err, out)
	assert.Contains(t, out, "certificate revoked")
}
