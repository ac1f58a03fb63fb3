package api_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	ccmmodel "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/ccm/v1/model"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
)

// ocspEnv is a PCA daemon with a root CA, a leaf it issued, and their
// PEM files for openssl.
type ocspEnv struct {
	*pcaEnv
	root, leafID string
	caCert, leaf *x509.Certificate
	caFile       string
	leafFile     string
}

func newOCSPEnv(t *testing.T, backend string, opts ...apitest.Options) *ocspEnv {
	p := newPCA(t, backend, opts...)
	e := &ocspEnv{pcaEnv: p}
	e.root = p.createRoot("OCSP Root")
	e.leafID = p.issueLeaf(e.root, "ocsp.hsmca.test")
	caPEM, _ := p.exportCA(e.root)
	leafPEM := p.ok(p.do("POST", pcaCerts+"/"+e.leafID+"/export", nil), http.StatusOK)["certificate"].(string)
	e.caCert, e.leaf = pcaParseCert(t, caPEM), pcaParseCert(t, leafPEM)
	dir := t.TempDir()
	e.caFile = pcaWriteFile(t, dir, "ca.pem", []byte(caPEM))
	e.leafFile = pcaWriteFile(t, dir, "leaf.pem", []byte(leafPEM))
	return e
}

func (e *ocspEnv) setSwitch(on bool) {
	e.t.Helper()
	e.ok(e.do("POST", pcaCAs+"/"+e.root+"/ocsp/switch", map[string]any{"ocsp_switch": on}), http.StatusNoContent)
}

// openssl asks the daemon with openssl's OCSP client (POST) and returns
// its output.
func (e *ocspEnv) openssl(args ...string) string {
	e.t.Helper()
	all := append([]string{"ocsp", "-issuer", e.caFile, "-CAfile", e.caFile, "-url", e.Server.URL + "/ocsp"}, args...)
	out, _ := pcaOpenSSL(e.t, all...)
	return out
}

// get asks by GET (RFC 5019 §A.1: base64, then URL-encoded).
func (e *ocspEnv) get(req []byte, headers ...string) *http.Response {
	e.t.Helper()
	hr, err := http.NewRequest("GET", e.Server.URL+"/ocsp/"+url.PathEscape(base64.StdEncoding.EncodeToString(req)), nil)
	require.NoError(e.t, err)
	for i := 0; i+1 < len(headers); i += 2 {
		hr.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(hr)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, r io.Reader) []byte {
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return b
}

func ocspAnswers(e *apitest.Env, status, cache string) float64 {
	var m dto.Metric
	require.NoError(e.T, e.Metrics.OCSPAnswers.WithLabelValues(status, cache).Write(&m))
	return m.GetCounter().GetValue()
}

// openssl's OCSP client asks about a PCA leaf: unauthorized while the
// CA's OCSP is off, good once on (with and without a nonce), revoked at
// once after the revocation, unknown for a serial number the CA never
// issued; and Go's client by GET gets the same stored answer with
// consistent caching headers.
func TestOCSPOpenSSL(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			e := newOCSPEnv(t, backend)
			assert.NotContains(t, e.showCA(e.root), "ocsp_switch", "absent while off")
			out := e.openssl("-cert", e.leafFile, "-no_nonce")
			assert.Contains(t, out, "unauthorized", "OCSP is off")

			e.setSwitch(true)
			assert.Equal(t, true, e.showCA(e.root)["ocsp_switch"])
			out = e.openssl("-cert", e.leafFile, "-no_nonce")
			assert.Contains(t, out, "Response verify OK", out)
			assert.Contains(t, out, e.leafFile+": good", out)
			assert.Contains(t, out, "Next Update:", out)
			assert.Equal(t, 1.0, ocspAnswers(e.Env, "good", "miss"), "the first answer is signed and stored")
			out = e.openssl("-cert", e.leafFile, "-no_nonce")
			assert.Contains(t, out, e.leafFile+": good", out)
			assert.Equal(t, 1.0, ocspAnswers(e.Env, "good", "hit"), "the second is the stored one")

			out = e.openssl("-cert", e.leafFile)
			assert.Contains(t, out, "Response verify OK", out)
			assert.Contains(t, out, e.leafFile+": good", out)
			assert.NotContains(t, out, "nonce", "the nonce is echoed: %s", out)
			assert.Equal(t, 1.0, ocspAnswers(e.Env, "good", "fresh"))

			e.ok(e.do("POST", pcaCerts+"/"+e.leafID+"/revoke", map[string]any{"reason": "KEY_COMPROMISE"}), http.StatusNoContent)
			out = e.openssl("-cert", e.leafFile, "-no_nonce")
			assert.Contains(t, out, "Response verify OK", out)
			assert.Contains(t, out, e.leafFile+": revoked", out)
			assert.Contains(t, out, "Reason: keyCompromise", out)
			assert.Contains(t, out, "Revocation Time:", out)
			assert.Equal(t, 1.0, ocspAnswers(e.Env, "revoked", "hit"), "re-signed and stored by the revocation")
			out = e.openssl("-cert", e.leafFile)
			assert.Contains(t, out, e.leafFile+": revoked", out)
			assert.NotContains(t, out, "nonce", out)

			out = e.openssl("-serial", "0x1234567890abcdef", "-no_nonce")
			assert.Contains(t, out, "Response verify OK", out)
			assert.Contains(t, out, "0x1234567890abcdef: unknown", out)
			assert.Equal(t, 1.0, ocspAnswers(e.Env, "unknown", "fresh"), "unknown answers are never stored")

			// Go's client, by GET: the stored answer, with its caching headers.
			req, err := ocsp.CreateRequest(e.leaf, e.caCert, nil)
			require.NoError(t, err)
			resp := e.get(req)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "application/ocsp-response", resp.Header.Get("Content-Type"))
			der := readAll(t, resp.Body)
			r, err := ocsp.ParseResponseForCert(der, e.leaf, e.caCert)
			require.NoError(t, err)
			assert.Equal(t, ocsp.Revoked, r.Status)
			assert.Equal(t, ocsp.KeyCompromise, r.RevocationReason)
			require.NotNil(t, r.Certificate, "a delegated responder signs (the default)")
			assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, r.Certificate.ExtKeyUsage)
			assert.True(t, issuance.HasOCSPNoCheck(r.Certificate))
			lm, err := http.ParseTime(resp.Header.Get("Last-Modified"))
			require.NoError(t, err)
			assert.Equal(t, r.ThisUpdate, lm.UTC())
			exp, err := http.ParseTime(resp.Header.Get("Expires"))
			require.NoError(t, err)
			assert.Equal(t, r.NextUpdate, exp.UTC())
			cc := resp.Header.Get("Cache-Control")
			assert.Contains(t, cc, "public")
			assert.Contains(t, cc, "max-age=")
			assert.Regexp(t, `max-age=(86[0-3]\d\d|8[0-5]\d\d\d|[1-7]\d{4}|\d{1,4})\b`, cc, "at most the 24 hours to nextUpdate")
			etag := resp.Header.Get("ETag")
			require.NotEmpty(t, etag)

			again := e.get(req)
			assert.Equal(t, der, readAll(t, again.Body), "the same stored bytes")
			assert.Equal(t, etag, again.Header.Get("ETag"))
			assert.Equal(t, http.StatusNotModified, e.get(req, "If-None-Match", etag).StatusCode)
			assert.Equal(t, http.StatusNotModified, e.get(req, "If-Modified-Since", resp.Header.Get("Last-Modified")).StatusCode)
			assert.Equal(t, http.StatusOK, e.get(req, "If-None-Match", `"other"`).StatusCode)

			// A POST answer is the same stored one, not for HTTP caches.
			post, err := http.Post(e.Server.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
			require.NoError(t, err)
			defer post.Body.Close()
			assert.Equal(t, der, readAll(t, post.Body))
			assert.Equal(t, "no-store", post.Header.Get("Cache-Control"))

			e.setSwitch(false)
			assert.NotContains(t, e.showCA(e.root), "ocsp_switch")
			out = e.openssl("-cert", e.leafFile, "-no_nonce")
			assert.Contains(t, out, "unauthorized", out)
		})
	}
}

// Requests the responder cannot answer: not DER, base64 that is not,
// another content type, a CA that is not here.
func TestOCSPRefusals(t *testing.T) {
	e := newOCSPEnv(t, "bolt")
	e.setSwitch(true)
	malformed := issuance.OCSPErrorResponse(issuance.OCSPMalformedRequest)

	resp := e.get([]byte("not an OCSP request"))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, malformed, readAll(t, resp.Body))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))

	// Base64 sent as it is (its '/' and '+' not escaped), padded or not,
	// or base64url: all read.
	good, err := ocsp.CreateRequest(e.leaf, e.caCert, nil)
	require.NoError(t, err)
	for _, enc := range []string{base64.StdEncoding.EncodeToString(good), base64.RawStdEncoding.EncodeToString(good),
		base64.URLEncoding.EncodeToString(good), strings.ReplaceAll(base64.StdEncoding.EncodeToString(good), "+", "%20")} {
		r, err := http.Get(e.Server.URL + "/ocsp/" + enc)
		require.NoError(t, err)
		der := readAll(t, r.Body)
		r.Body.Close()
		resp, err := ocsp.ParseResponseForCert(der, e.leaf, e.caCert)
		require.NoError(t, err, enc)
		assert.Equal(t, ocsp.Good, resp.Status)
	}

	r2, err := http.Get(e.Server.URL + "/ocsp/***")
	require.NoError(t, err)
	defer r2.Body.Close()
	assert.Equal(t, malformed, readAll(t, r2.Body))

	post, err := http.Post(e.Server.URL+"/ocsp", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	defer post.Body.Close()
	assert.Equal(t, http.StatusUnsupportedMediaType, post.StatusCode)

	tooBig, err := http.Post(e.Server.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(make([]byte, 20000)))
	require.NoError(t, err)
	defer tooBig.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, tooBig.StatusCode)

	// A CA that is not here.
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "elsewhere"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	foreign, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	req, err := ocsp.CreateRequest(e.leaf, foreign, nil)
	require.NoError(t, err)
	resp = e.get(req)
	assert.Equal(t, issuance.OCSPErrorResponse(issuance.OCSPUnauthorized), readAll(t, resp.Body))
	assert.Equal(t, 1.0, ocspAnswers(e.Env, "unauthorized", "none"))
	assert.Equal(t, 2.0, ocspAnswers(e.Env, "malformed", "none"))

	// The switch of a CA still waiting for its certificate is refused.
	pending := e.createPending("pending")
	pcaFail(t, e.do("POST", pcaCAs+"/"+pending+"/ocsp/switch", map[string]any{"ocsp_switch": true}),
		http.StatusBadRequest, "PCA.00020301")
	pcaFail(t, e.do("POST", pcaCAs+"/"+e.root+"/ocsp/switch", map[string]any{}), http.StatusBadRequest, "PCA.00020001")
}

// A managed DTS root with OCSP on from its creation answers for its VICAL
// signers' certificates (openssl and Go), revoked once a signer is
// deleted; the PUT of ocspEnabled false switches it off. An uploaded root
// cannot have it.
func TestOCSPDTSRoot(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			root := f.root(map[string]any{"organisationName": "OCSP Org", "ocspEnabled": true})
			assert.Equal(t, true, root["ocspEnabled"])
			rootID := root["id"].(string)
			rootCert := parsePEMCert(t, root["certificatePem"].(string))
			r := f.do("POST", signerPath, map[string]any{"caId": rootID})
			require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
			v := r.Map(t)
			sc := parsePEMCert(t, v["certificatePem"].(string))

			dir := t.TempDir()
			rootFile := pcaWriteFile(t, dir, "root.pem", []byte(root["certificatePem"].(string)))
			signerFile := pcaWriteFile(t, dir, "signer.pem", []byte(v["certificatePem"].(string)))
			out, _ := pcaOpenSSL(t, "ocsp", "-issuer", rootFile, "-cert", signerFile, "-CAfile", rootFile,
				"-url", f.env.Server.URL+"/ocsp")
			assert.Contains(t, out, "Response verify OK", out)
			assert.Contains(t, out, signerFile+": good", out)

			req, err := ocsp.CreateRequest(sc, rootCert, &ocsp.RequestOptions{Hash: crypto.SHA256})
			require.NoError(t, err)
			get := func() *http.Response {
				resp, err := http.Get(f.env.Server.URL + "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(req)))
				require.NoError(t, err)
				t.Cleanup(func() { resp.Body.Close() })
				return resp
			}
			resp, err := ocsp.ParseResponseForCert(readAll(t, get().Body), sc, rootCert)
			require.NoError(t, err)
			assert.Equal(t, ocsp.Good, resp.Status)

			require.Equal(t, http.StatusNoContent, f.do("DELETE", signerPath+"/"+v["id"].(string), nil).Status)
			resp, err = ocsp.ParseResponseForCert(readAll(t, get().Body), sc, rootCert)
			require.NoError(t, err)
			assert.Equal(t, ocsp.Revoked, resp.Status, "re-signed when the signer was deleted")
			assert.Equal(t, ocsp.CessationOfOperation, resp.RevocationReason)
			out, _ = pcaOpenSSL(t, "ocsp", "-issuer", rootFile, "-cert", signerFile, "-CAfile", rootFile,
				"-url", f.env.Server.URL+"/ocsp", "-no_nonce")
			assert.Contains(t, out, signerFile+": revoked", out)

			r = f.do("PUT", caPath+"/"+rootID, map[string]any{"ocspEnabled": false})
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			assert.Equal(t, false, r.Map(t)["ocspEnabled"])
			assert.Equal(t, true, r.Map(t)["active"])
			assert.Equal(t, issuance.OCSPErrorResponse(issuance.OCSPUnauthorized), readAll(t, get().Body))
			assert.Equal(t, 1, counter(t, f.env, "ECOSYSTEM_DTS_CA_CERTIFICATE_OCSP_DISABLE", "SUCCESS"))

			up := testpki.NewCA(t, "uploaded")
			d := envelope(t, f.do("POST", caPath, map[string]any{"certificatePem": string(up.PEM()), "ocspEnabled": true}),
				http.StatusBadRequest, "BadRequest")
			assert.Equal(t, []string{"ocspEnabled"}, params(d))
		})
	}
}

// Huawei's official Go SDK switches a CA's OCSP (UpdateOcspSwitch) and
// gets the CCM error of a CA whose status forbids it.
func TestHuaweiSDKOCSPSwitch(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend)
			ak, sk := env.NewAccessKey("acme", signer.RoleCAOperator)
			c := ccmClient(t, env.Server.URL, ak, sk, "acme")
			created, err := c.CreateCertificateAuthority(&ccmmodel.CreateCertificateAuthorityRequest{
				Body: &ccmmodel.CreateCertificateAuthorityRequestBody{Type: "ROOT", DistinguishedName: sdkDN("SDK OCSP Root"),
					KeyAlgorithm: "EC256", SignatureAlgorithm: ptr("SHA256"),
					Validity: &ccmmodel.Validity{Type: "YEAR", Value: 10}}})
			require.NoError(t, err)
			root := *created.CaId
			tok := env.NewToken("acme", signer.RoleCAOperator)
			show := func() map[string]any {
				return env.Do("GET", pcaCAs+"/"+root, "", nil, "X-Auth-Token", tok).Map(t)
			}
			assert.NotContains(t, show(), "ocsp_switch")

			_, err = c.UpdateOcspSwitch(&ccmmodel.UpdateOcspSwitchRequest{CaId: root,
				Body: &ccmmodel.UpdateOcspSwitchRequestBody{OcspSwitch: true}})
			require.NoError(t, err)
			assert.Equal(t, true, show()["ocsp_switch"])
			_, err = c.UpdateOcspSwitch(&ccmmodel.UpdateOcspSwitchRequest{CaId: root,
				Body: &ccmmodel.UpdateOcspSwitchRequestBody{OcspSwitch: false}})
			require.NoError(t, err)
			assert.NotContains(t, show(), "ocsp_switch")

			pending, err := c.CreateCertificateAuthority(&ccmmodel.CreateCertificateAuthorityRequest{
				Body: &ccmmodel.CreateCertificateAuthorityRequestBody{Type: "SUBORDINATE", DistinguishedName: sdkDN("SDK Pending"),
					KeyAlgorithm: "EC256"}})
			require.NoError(t, err)
			status, code := sdkStatus(t, func() error {
				_, err := c.UpdateOcspSwitch(&ccmmodel.UpdateOcspSwitchRequest{CaId: *pending.CaId,
					Body: &ccmmodel.UpdateOcspSwitchRequestBody{OcspSwitch: true}})
				return err
			}())
			assert.Equal(t, http.StatusBadRequest, status)
			assert.Equal(t, "PCA.00020301", code)
			assert.Equal(t, 1, counter(t, env, "PCA_CA_OCSP_ENABLE", "FAIL"))
		})
	}
}

// Whatever an OCSP request holds, by POST or by GET, the answer is HTTP
// 200 with an OCSP answer (here, with no CA answering, an unsigned
// error): never a 500, never something an OCSP client cannot read.
func FuzzOCSPRequest(f *testing.F) {
	fr := newFuzzRouter(f)
	ca := testpki.NewCA(f, "fuzz OCSP CA")
	leaf := ca.Issue(f, testpki.Options{CommonName: "leaf"})
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		req, err := ocsp.CreateRequest(leaf.Cert, ca.Cert, &ocsp.RequestOptions{Hash: h})
		require.NoError(f, err)
		f.Add(req)
	}
	f.Add([]byte("not DER"))
	f.Add([]byte{0x30, 0x80, 0x30, 0x80})
	f.Add(bytes.Repeat([]byte{0x30, 0x82, 0xff, 0xff}, 100))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, get := range []bool{false, true} {
			var req *http.Request
			if get {
				req = httptest.NewRequest("GET", "/ocsp/"+url.PathEscape(base64.StdEncoding.EncodeToString(body)), nil)
			} else {
				req = httptest.NewRequest("POST", "/ocsp", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/ocsp-request")
			}
			w := httptest.NewRecorder()
			fr.h.ServeHTTP(w, req)
			if !get && len(body) > 16<<10 {
				require.Equal(t, http.StatusRequestEntityTooLarge, w.Code)
				continue
			}
			require.Equal(t, http.StatusOK, w.Code, "body: %x", w.Body.Bytes())
			require.Equal(t, "application/ocsp-response", w.Header().Get("Content-Type"))
			_, err := ocsp.ParseResponse(w.Body.Bytes(), nil)
			var re ocsp.ResponseError
			require.ErrorAs(t, err, &re, "an OCSP error answer")
		}
	})
}

// With a public base URL, what a CA signs while its OCSP is on names the
// responder in its authorityInfoAccess, and openssl asks it there; what
// it signed before, or signs once OCSP is off, names none. Likewise for a
// managed DTS root's signers.
func TestOCSPURLInCertificates(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend, apitest.Options{PublicBaseURL: apitest.SelfURL})
			root := p.createRoot("AIA OCSP Root")
			leafOf := func(id string) (*x509.Certificate, string) {
				pemText := p.ok(p.do("POST", pcaCerts+"/"+id+"/export", nil), http.StatusOK)["certificate"].(string)
				return pcaParseCert(t, pemText), pemText
			}
			before, _ := leafOf(p.issueLeaf(root, "before.hsmca.test"))
			assert.Empty(t, before.OCSPServer)
			assert.NotEmpty(t, before.IssuingCertificateURL, "caIssuers is there regardless")

			p.ok(p.do("POST", pcaCAs+"/"+root+"/ocsp/switch", map[string]any{"ocsp_switch": true}), http.StatusNoContent)
			sub := p.createSub("AIA OCSP Sub", root, 0)
			subPEM, _ := p.exportCA(sub)
			assert.Equal(t, []string{p.Server.URL + "/ocsp"}, pcaParseCert(t, subPEM).OCSPServer, "a subordinate the root signs")
			leaf, leafPEM := leafOf(p.issueLeaf(root, "after.hsmca.test"))
			require.Equal(t, []string{p.Server.URL + "/ocsp"}, leaf.OCSPServer)

			dir := t.TempDir()
			caPEM, _ := p.exportCA(root)
			caFile := pcaWriteFile(t, dir, "ca.pem", []byte(caPEM))
			leafFile := pcaWriteFile(t, dir, "leaf.pem", []byte(leafPEM))
			uri, err := pcaOpenSSL(t, "x509", "-in", leafFile, "-noout", "-ocsp_uri")
			require.NoError(t, err)
			out, _ := pcaOpenSSL(t, "ocsp", "-issuer", caFile, "-cert", leafFile, "-CAfile", caFile, "-url", uri)
			assert.Contains(t, out, "Response verify OK", out)
			assert.Contains(t, out, leafFile+": good", out)

			p.ok(p.do("POST", pcaCAs+"/"+root+"/ocsp/switch", map[string]any{"ocsp_switch": false}), http.StatusNoContent)
			off, _ := leafOf(p.issueLeaf(root, "off.hsmca.test"))
			assert.Empty(t, off.OCSPServer)

			f := newDTS(t, backend, apitest.Options{PublicBaseURL: apitest.SelfURL, Token: p.Token, Redis: p.Redis})
			r := f.root(map[string]any{"organisationName": "AIA OCSP Org", "ocspEnabled": true})
			s := f.do("POST", signerPath, map[string]any{"caId": r["id"]})
			require.Equal(t, http.StatusCreated, s.Status, string(s.Body))
			sc := parsePEMCert(t, s.Map(t)["certificatePem"].(string))
			assert.Equal(t, []string{f.env.Server.URL + "/ocsp"}, sc.OCSPServer)
		})
	}
}
