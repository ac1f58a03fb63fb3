package api_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/ccm/v1/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
	pcasvc "github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store/boltstore"
)

func csrPEM(t *testing.T, key crypto.Signer, cn string, dns ...string) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn, Organization: []string{"Example"}}, DNSNames: dns}, key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func ecKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	require.NoError(t, err)
	return k
}

// Every documented error code, and the family's envelope, on bad input.
func TestPCAValidationCodes(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			root := p.createRoot("Codes Root")
			sub := p.createSub("Codes Sub", root, 0)
			rootBody := func(mod func(m map[string]any)) map[string]any {
				m := map[string]any{"type": "ROOT", "distinguished_name": pcaFullDN("R"), "key_algorithm": "EC256",
					"signature_algorithm": "SHA256", "validity": pcaYears(1)}
				mod(m)
				return m
			}
			subBody := func(mod func(m map[string]any)) map[string]any {
				m := map[string]any{"type": "SUBORDINATE", "distinguished_name": pcaFullDN("S"), "key_algorithm": "EC256",
					"signature_algorithm": "SHA256", "validity": pcaYears(1), "issuer_id": root}
				mod(m)
				return m
			}
			leafBody := func(mod func(m map[string]any)) map[string]any {
				m := map[string]any{"issuer_id": sub, "distinguished_name": map[string]any{"common_name": "leaf"},
					"validity": map[string]any{"type": "DAY", "value": 1}}
				mod(m)
				return m
			}
			dn := func(k, v string) func(m map[string]any) {
				return func(m map[string]any) { d := pcaFullDN("X"); d[k] = v; m["distinguished_name"] = d }
			}
			set := func(k string, v any) func(m map[string]any) { return func(m map[string]any) { m[k] = v } }
			san := func(typ, v string) func(m map[string]any) {
				return set("subject_alternative_names", []map[string]any{{"type": typ, "value": v}})
			}
			manySANs := make([]map[string]any, 21)
			for i := range manySANs {
				manySANs[i] = map[string]any{"type": "DNS", "value": fmt.Sprintf("h%d.example.com", i)}
			}
			past := time.Now().Add(-10 * time.Minute).UnixMilli()
			cases := []struct {
				name, path string
				body       any
				code       string
			}{
				{"bad country", pcaCAs, rootBody(dn("country", "Germany")), "PCA.00020101"},
				{"CA without organization", pcaCAs, rootBody(dn("organization", "")), "PCA.00020101"},
				{"common name too long", pcaCAs, rootBody(dn("common_name", strings.Repeat("a", 65))), "PCA.00020101"},
				{"no DN", pcaCAs, rootBody(func(m map[string]any) { delete(m, "distinguished_name") }), "PCA.00020101"},
				{"unknown key algorithm", pcaCAs, rootBody(set("key_algorithm", "DSA1024")), "PCA.00020102"},
				{"EC521 is not a CA algorithm", pcaCAs, rootBody(set("key_algorithm", "EC521")), "PCA.00020102"},
				{"unknown signature algorithm", pcaCAs, rootBody(set("signature_algorithm", "MD5")), "PCA.00020103"},
				{"root without signature algorithm", pcaCAs, rootBody(func(m map[string]any) { delete(m, "signature_algorithm") }), "PCA.00020103"},
				{"validity type", pcaCAs, rootBody(set("validity", map[string]any{"type": "WEEK", "value": 1})), "PCA.00020109"},
				{"validity zero", pcaCAs, rootBody(set("validity", map[string]any{"type": "DAY", "value": 0})), "PCA.00020109"},
				{"root over 30 years", pcaCAs, rootBody(set("validity", map[string]any{"type": "MONTH", "value": 361})), "PCA.00020109"},
				{"root without validity", pcaCAs, rootBody(func(m map[string]any) { delete(m, "validity") }), "PCA.00020109"},
				{"start_from in the past", pcaCAs, rootBody(set("validity", map[string]any{"type": "DAY", "value": 1, "start_from": past})), "PCA.00020109"},
				{"subordinate over 20 years", pcaCAs, subBody(set("validity", pcaYears(21))), "PCA.00020109"},
				{"subordinate outliving its issuer", pcaCAs, subBody(set("validity", pcaYears(11))), "PCA.00020109"},
				{"unknown issuer", pcaCAs, subBody(set("issuer_id", uuid.NewString())), "PCA.00020201"},
				{"malformed issuer", pcaCAs, subBody(set("issuer_id", "nope")), "PCA.00020201"},
				{"bad type", pcaCAs, rootBody(set("type", "INTERMEDIATE")), "PCA.00020001"},
				{"path length out of range", pcaCAs, subBody(set("path_length", 7)), "PCA.00020001"},
				{"unknown key usage", pcaCAs, rootBody(set("key_usages", []string{"everything"})), "PCA.00020001"},
				{"CRL days", pcaCAs, rootBody(set("crl_configuration", map[string]any{"enabled": true, "valid_days": 31})), "PCA.00020001"},
				{"wrong JSON type", pcaCAs, rootBody(set("validity", "1y")), "PCA.00020001"},
				{"malformed JSON", pcaCAs, "{", "PCA.00020001"},
				{"leaf SAN type", pcaCerts, leafBody(san("X400", "c=de")), "PCA.00020112"},
				{"leaf bad IP", pcaCerts, leafBody(san("IP", "300.1.1.1")), "PCA.00020111"},
				{"leaf bad DNS", pcaCerts, leafBody(san("DNS", "under_score..example")), "PCA.00020001"},
				{"leaf bad email", pcaCerts, leafBody(san("EMAIL", "not an address")), "PCA.00020001"},
				{"leaf relative URI", pcaCerts, leafBody(san("URI", "/just/a/path")), "PCA.00020001"},
				{"leaf 21 SANs", pcaCerts, leafBody(set("subject_alternative_names", manySANs)), "PCA.00020001"},
				{"leaf without common name", pcaCerts, leafBody(set("distinguished_name", map[string]any{"organization": "x"})), "PCA.00020101"},
				{"leaf key algorithm", pcaCerts, leafBody(set("key_algorithm", "RSA1024")), "PCA.00020102"},
				{"leaf signature algorithm", pcaCerts, leafBody(set("signature_algorithm", "SHA1")), "PCA.00020103"},
				{"leaf outliving its issuer", pcaCerts, leafBody(set("validity", pcaYears(6))), "PCA.00020109"},
				{"leaf from an unknown CA", pcaCerts, leafBody(set("issuer_id", uuid.NewString())), "PCA.00020201"},
				{"leaf with keyCertSign", pcaCerts, leafBody(set("key_usages", []string{"keyCertSign"})), "PCA.00020001"},
				{"activate bad signature algorithm", pcaCAs + "/" + uuid.NewString() + "/activate",
					map[string]any{"issuer_id": root, "signature_algorithm": "SHA1", "validity": pcaYears(1)}, "PCA.00020103"},
				{"activate unknown CA", pcaCAs + "/" + uuid.NewString() + "/activate",
					map[string]any{"issuer_id": root, "signature_algorithm": "SHA256", "validity": pcaYears(1)}, "PCA.10010002"},
				{"revoke reason", pcaCAs + "/" + sub + "/revoke", map[string]any{"reason": "BORED"}, "PCA.00020001"},
				{"crl valid days", pcaCAs + "/" + sub + "/crl/enable", map[string]any{"valid_days": 3}, "PCA.00020001"},
				{"crl valid days missing", pcaCAs + "/" + sub + "/crl/enable", map[string]any{}, "PCA.00020001"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					pcaFail(t, p.do("POST", tc.path, tc.body), http.StatusBadRequest, tc.code)
				})
			}

			// Unknown ids answer 400 PCA.10010002 on every route.
			for _, r := range []struct{ method, path string }{
				{"GET", pcaCAs + "/" + uuid.NewString()},
				{"GET", pcaCAs + "/not-a-uuid"},
				{"GET", pcaCAs + "/" + uuid.NewString() + "/csr"},
				{"POST", pcaCAs + "/" + uuid.NewString() + "/export"},
				{"POST", pcaCAs + "/" + uuid.NewString() + "/disable"},
				{"POST", pcaCAs + "/" + uuid.NewString() + "/enable"},
				{"POST", pcaCAs + "/" + uuid.NewString() + "/restore"},
				{"DELETE", pcaCAs + "/" + uuid.NewString()},
				{"POST", pcaCAs + "/" + uuid.NewString() + "/revoke"},
				{"POST", pcaCAs + "/" + uuid.NewString() + "/crl/disable"},
				{"GET", pcaCAs + "/" + uuid.NewString() + "/crl"},
				{"GET", pcaCerts + "/" + uuid.NewString()},
				{"POST", pcaCerts + "/" + uuid.NewString() + "/export"},
				{"POST", pcaCerts + "/" + uuid.NewString() + "/revoke"},
				{"DELETE", pcaCerts + "/" + uuid.NewString()},
			} {
				pcaFail(t, p.do(r.method, r.path, nil), http.StatusBadRequest, "PCA.10010002")
			}
			pcaFail(t, p.do("DELETE", pcaCAs+"/"+sub+"?pending_days=3", nil), http.StatusBadRequest, "PCA.00020001")
			msg := pcaFail(t, p.do("DELETE", pcaCAs+"/"+sub+"?pending_days=7", nil), http.StatusBadRequest, "PCA.00020301")
			assert.Contains(t, msg, "ACTIVED")
			assert.Contains(t, msg, "disable")
			pcaFail(t, p.do("POST", pcaCAs+"/"+root+"/revoke", nil), http.StatusBadRequest, "PCA.00020309")
			pcaFail(t, p.do("GET", pcaCAs+"?limit=1001", nil), http.StatusBadRequest, "PCA.00020001")
			pcaFail(t, p.do("GET", pcaCAs+"?sort_key=serial", nil), http.StatusBadRequest, "PCA.00020001")
			pcaFail(t, p.do("GET", pcaCAs+"?status=ACTIVE", nil), http.StatusBadRequest, "PCA.00020001")
			pcaFail(t, p.do("GET", pcaCerts+"?sort_dir=UP", nil), http.StatusBadRequest, "PCA.00020001")
			leaf := p.issueLeaf(sub, "leaf.example.com")
			pcaFail(t, p.do("POST", pcaCerts+"/"+leaf+"/export", map[string]any{"type": "IIS"}), http.StatusBadRequest, "PCA.00020311")
			pcaFail(t, p.do("POST", pcaCerts+"/"+leaf+"/export", map[string]any{"is_compressed": "true"}), http.StatusBadRequest, "PCA.00020311")
			pcaFail(t, p.do("POST", pcaCerts+"/"+leaf+"/export", map[string]any{"password": "123"}), http.StatusBadRequest, "PCA.00020001")
		})
	}
}

// A child's path length stays below its issuer's, and an issuer with path
// length 0 certifies end entities only, whichever way the child is made.
func TestPCAPathLength(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			root := p.createRoot("PL Root")
			a := p.createSub("PL A", root, 1)
			pcaFail(t, p.do("POST", pcaCAs, map[string]any{"type": "SUBORDINATE", "distinguished_name": pcaFullDN("PL X"),
				"key_algorithm": "EC256", "signature_algorithm": "SHA256", "validity": pcaYears(1), "issuer_id": a, "path_length": 1}),
				http.StatusBadRequest, "PCA.00020305")
			b := p.createSub("PL B", a, 0, map[string]any{"validity": pcaYears(4)})
			assert.Equal(t, float64(0), p.showCA(b)["path_length"])
			pcaFail(t, p.do("POST", pcaCAs, map[string]any{"type": "SUBORDINATE", "distinguished_name": pcaFullDN("PL C"),
				"key_algorithm": "EC256", "signature_algorithm": "SHA256", "validity": pcaYears(1), "issuer_id": b, "path_length": 0}),
				http.StatusBadRequest, "PCA.00020305")
			pending := p.createPending("PL Pending")
			msg := pcaFail(t, p.do("POST", pcaCAs+"/"+pending+"/activate", map[string]any{"issuer_id": b,
				"signature_algorithm": "SHA256", "validity": pcaYears(1), "path_length": 0}), http.StatusBadRequest, "PCA.00020305")
			assert.Contains(t, msg, "path length 0")
			assert.Equal(t, "PENDING", p.showCA(pending)["status"], "a refused activation changes nothing")
			csr := csrPEM(t, ecKey(t, elliptic.P256()), "External Sub")
			pcaFail(t, p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": b, "csr": csr, "type": "INTERMEDIATE_CA",
				"validity": pcaYears(1)}), http.StatusBadRequest, "PCA.00020305")
			pcaFail(t, p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": a, "csr": csr, "type": "INTERMEDIATE_CA",
				"path_length": 1, "validity": pcaYears(1)}), http.StatusBadRequest, "PCA.00020305")
			inter := p.ok(p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": a, "csr": csr, "type": "INTERMEDIATE_CA",
				"validity": pcaYears(1)}), http.StatusOK)["certificate_id"].(string)
			ex := p.ok(p.do("POST", pcaCerts+"/"+inter+"/export", nil), http.StatusOK)
			ic := pcaParseCert(t, ex["certificate"].(string))
			assert.True(t, ic.IsCA)
			assert.True(t, ic.MaxPathLenZero)
			assert.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature, ic.KeyUsage)
			assert.NotContains(t, ex, "private_key", "no key is held for a CSR")

			// B (path length 0) still issues leaves; the four-level chain verifies.
			leaf := p.issueLeaf(b, "deep.example.com")
			ex = p.ok(p.do("POST", pcaCerts+"/"+leaf+"/export", nil), http.StatusOK)
			rootPEM, _ := p.exportCA(root)
			roots := x509.NewCertPool()
			roots.AddCert(pcaParseCert(t, rootPEM))
			inters := x509.NewCertPool()
			require.True(t, inters.AppendCertsFromPEM([]byte(ex["certificate_chain"].(string))))
			_, err := pcaParseCert(t, ex["certificate"].(string)).Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters})
			require.NoError(t, err)
		})
	}
}

// Issuance from a CSR checks the CSR's signature and key; parsing reports
// what the CSR holds.
func TestPCAIssueFromCSR(t *testing.T) {
	p := newPCA(t, "bolt")
	// The one RSA CA of the suite.
	root := p.createRoot("RSA Root", map[string]any{"key_algorithm": "RSA2048", "signature_algorithm": "SHA384"})
	rootPEM, _ := p.exportCA(root)
	rootCert := pcaParseCert(t, rootPEM)
	assert.Equal(t, x509.SHA384WithRSA, rootCert.SignatureAlgorithm)
	assert.Equal(t, "RSA2048", p.showCA(root)["key_algorithm"])

	key := ecKey(t, elliptic.P384())
	good := csrPEM(t, key, "svc.example.com", "svc.example.com", "api.example.com")
	id := p.ok(p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": root, "csr": good,
		"validity": map[string]any{"type": "MONTH", "value": 3}}), http.StatusOK)["certificate_id"].(string)
	c := p.ok(p.do("GET", pcaCerts+"/"+id, nil), http.StatusOK)
	assert.Equal(t, "ISSUED", c["status"])
	assert.Equal(t, "EC384", c["key_algorithm"])
	assert.Equal(t, "CSR", c["gen_mode"])
	assert.Equal(t, "RSA Root", c["issuer_name"])
	assert.Equal(t, float64(3*31*24*3600*1000), c["not_after"].(float64)-c["not_before"].(float64))
	ex := p.ok(p.do("POST", pcaCerts+"/"+id+"/export", map[string]any{"type": "OTHER"}), http.StatusOK)
	cert := pcaParseCert(t, ex["certificate"].(string))
	assert.True(t, key.PublicKey.Equal(cert.PublicKey))
	assert.Equal(t, []string{"svc.example.com", "api.example.com"}, cert.DNSNames)
	assert.Equal(t, x509.KeyUsageDigitalSignature, cert.KeyUsage)
	assert.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, cert.ExtKeyUsage)
	require.NoError(t, cert.CheckSignatureFrom(rootCert))

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	weak := csrPEM(t, rsa1024, "weak")
	b, _ := pem.Decode([]byte(good))
	tampered := bytes.Clone(b.Bytes)
	tampered[len(tampered)-3] ^= 0xff
	badSig := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}))
	p224 := csrPEM(t, ecKey(t, elliptic.P224()), "odd curve")
	for _, tc := range []struct {
		name, csr, code string
	}{
		{"RSA-1024", weak, "PCA.00020102"},
		{"P-224", p224, "PCA.00020102"},
		{"bad signature", badSig, "PCA.00020306"},
		{"not a CSR", rootPEM, "PCA.00020306"},
		{"garbage", "hello", "PCA.00020306"},
		{"empty", "", "PCA.00020306"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pcaFail(t, p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": root, "csr": tc.csr,
				"validity": pcaYears(1)}), http.StatusBadRequest, tc.code)
			pcaFail(t, p.do("POST", pcaCerts+"/csr/parse", map[string]any{"csr": tc.csr}), http.StatusBadRequest, tc.code)
		})
	}

	m := p.ok(p.do("POST", pcaCerts+"/csr/parse", map[string]any{"csr": good}), http.StatusOK)
	assert.Equal(t, "EC", m["key_algorithm"])
	assert.Equal(t, float64(384), m["key_algorithm_length"])
	assert.Equal(t, "SHA384", m["signature_algorithm"])
	assert.Equal(t, "svc.example.com", m["distinguished_name"].(map[string]any)["common_name"])
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	assert.Equal(t, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})), m["public_key"])
	// Base64 DER is read too.
	m = p.ok(p.do("POST", pcaCerts+"/csr/parse", map[string]any{"csr": base64.StdEncoding.EncodeToString(b.Bytes)}), http.StatusOK)
	assert.Equal(t, "EC", m["key_algorithm"])
}

// Another tenant's CA and certificate answer exactly like unknown ids, and
// the family's roles are enforced in its envelope.
func TestPCATenantIsolationAndRoles(t *testing.T) {
	p := newPCA(t, "bolt")
	root := p.createRoot("Mine")
	leaf := p.issueLeaf(root, "mine.example.com")
	other := p.NewToken("t2", "admin")
	for _, path := range []string{pcaCAs + "/" + root, pcaCerts + "/" + leaf} {
		r := p.Do("GET", path, other, nil)
		pcaFail(t, r, http.StatusBadRequest, "PCA.10010002")
		unknown := p.Do("GET", path[:strings.LastIndex(path, "/")+1]+uuid.NewString(), other, nil)
		assert.Equal(t, strings.ReplaceAll(string(unknown.Body), unknown.Map(t)["error_msg"].(string), ""),
			strings.ReplaceAll(string(r.Body), r.Map(t)["error_msg"].(string), ""))
	}
	pcaFail(t, p.Do("POST", pcaCerts, other, map[string]any{"issuer_id": root,
		"distinguished_name": map[string]any{"common_name": "x"}, "validity": map[string]any{"type": "DAY", "value": 1}}),
		http.StatusBadRequest, "PCA.00020201")
	m := p.ok(p.Do("GET", pcaCAs, other, nil), http.StatusOK)
	assert.Equal(t, float64(0), m["total"])

	auditor := p.NewToken("t1", "auditor")
	pcaFail(t, p.Do("GET", pcaCAs, auditor, nil), http.StatusForbidden, "PCA.10010008")
	pcaFail(t, p.Do("GET", pcaCAs, "", nil), http.StatusUnauthorized, "PCA.10010007")
	admin := p.NewToken("t1", "admin")
	p.ok(p.Do("GET", pcaCAs+"/"+root, admin, nil), http.StatusOK)
	// The CRL needs no credential at all.
	p.ok(p.do("POST", pcaCAs+"/"+root+"/crl/enable", map[string]any{"valid_days": 7}), http.StatusNoContent)
	r := p.Do("GET", pcaCAs+"/"+root+"/crl", "", nil)
	assert.Equal(t, http.StatusOK, r.Status)
}

// List filters, sort and pages, and the quota report.
func TestPCAListAndQuotas(t *testing.T) {
	p := newPCA(t, "redis")
	root := p.createRoot("b-root")
	s1 := p.createSub("c-sub", root, 0)
	s2 := p.createPending("a-pending")
	p.ok(p.do("POST", pcaCAs+"/"+s1+"/disable", nil), http.StatusNoContent)
	list := func(q string) (int, []string) {
		m := p.ok(p.do("GET", pcaCAs+q, nil), http.StatusOK)
		var ids []string
		for _, c := range m["certificate_authorities"].([]any) {
			ids = append(ids, c.(map[string]any)["ca_id"].(string))
		}
		return int(m["total"].(float64)), ids
	}
	n, ids := list("")
	assert.Equal(t, 3, n)
	assert.Equal(t, []string{s2, s1, root}, ids, "newest first by default")
	_, ids = list("?sort_key=common_name&sort_dir=ASC")
	assert.Equal(t, []string{s2, root, s1}, ids)
	n, ids = list("?type=SUBORDINATE&sort_dir=ASC")
	assert.Equal(t, 2, n)
	assert.Equal(t, []string{s1, s2}, ids)
	_, ids = list("?status=DISABLED")
	assert.Equal(t, []string{s1}, ids)
	_, ids = list("?name=ROOT")
	assert.Equal(t, []string{root}, ids)
	n, ids = list("?limit=1&offset=1&sort_dir=ASC")
	assert.Equal(t, 3, n)
	assert.Equal(t, []string{s1}, ids)
	n, ids = list("?limit=0")
	assert.Equal(t, 3, n)
	assert.Empty(t, ids)

	l1 := p.issueLeaf(root, "one.example.com")
	l2 := p.issueLeaf(root, "two.example.com")
	p.ok(p.do("POST", pcaCerts+"/"+l1+"/revoke", nil), http.StatusNoContent)
	m := p.ok(p.do("GET", pcaCerts+"?status=REVOKED", nil), http.StatusOK)
	assert.Equal(t, float64(1), m["total"])
	m = p.ok(p.do("GET", pcaCerts+"?status=ISSUED", nil), http.StatusOK)
	assert.Equal(t, float64(1), m["total"])
	assert.Equal(t, l2, m["certificates"].([]any)[0].(map[string]any)["certificate_id"])
	m = p.ok(p.do("GET", pcaCerts+"?name=two&sort_key=common_name", nil), http.StatusOK)
	assert.Equal(t, float64(1), m["total"])

	// Each quota route reports its own resource (more in TestPCAQuotaRoutes).
	for path, want := range map[string]model.Resources{
		pcaCAs + "/quotas":   {Type: "CERTIFICATE_AUTHORITY", Used: 3, Quota: 100},
		pcaCerts + "/quotas": {Type: "CERTIFICATE", Used: 2, Quota: 100000},
	} {
		r := p.do("GET", path, nil)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
		var q model.ShowCertificateQuotaResponse
		pcaDecodeSDK(t, r, &q)
		require.NotNil(t, q.Quotas)
		assert.Equal(t, []model.Resources{want}, q.Quotas.Resources, path)
	}
}

// post sends a JSON POST from any goroutine (no test assertions inside).
func post(url, token string, body any) (int, map[string]any, error) {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest("POST", url, bytes.NewReader(raw))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Auth-Token", token)
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return resp.StatusCode, m, nil
}

// Twenty concurrent creations against a quota of three: exactly three win,
// on both stores, and the rest get the quota code.
func TestPCACAQuotaRace(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend, apitest.Options{Engine: func(o *signer.Options) {
				o.Quotas = map[string]int64{pcasvc.QuotaCAs: 3}
			}})
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				won     int
				refused []string
				errs    []error
			)
			for i := 0; i < 20; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					status, m, err := post(p.Server.URL+pcaCAs, p.tok, map[string]any{"type": "ROOT",
						"distinguished_name": pcaFullDN(fmt.Sprintf("Race %d", i)), "key_algorithm": "EC256",
						"signature_algorithm": "SHA256", "validity": pcaYears(1)})
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err != nil:
						errs = append(errs, err)
					case status == http.StatusOK:
						won++
					default:
						refused = append(refused, fmt.Sprintf("%d %v", status, m["error_code"]))
					}
				}(i)
			}
			wg.Wait()
			require.Empty(t, errs)
			assert.Equal(t, 3, won)
			require.Len(t, refused, 17)
			for _, r := range refused {
				assert.Equal(t, "400 PCA.00020303", r)
			}
			m := p.ok(p.do("GET", pcaCAs, nil), http.StatusOK)
			assert.Equal(t, float64(3), m["total"])
			n, err := p.Store.QuotaUsage(t.Context(), "t1", pcasvc.QuotaCAs)
			require.NoError(t, err)
			assert.Equal(t, int64(3), n)
			intents, err := p.Store.ListIntents(t.Context())
			require.NoError(t, err)
			assert.Empty(t, intents, "the losers' keys were abandoned cleanly")
		})
	}
}

// A hundred concurrent issuances against one CA: unique serials, and the
// quota counter equals the number of certificates, on both stores.
func TestPCAConcurrentIssuance(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			root := p.createRoot("Busy Root")
			const n = 100
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				ids  []string
				errs []string
			)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					status, m, err := post(p.Server.URL+pcaCerts, p.tok, map[string]any{"issuer_id": root,
						"distinguished_name": map[string]any{"common_name": fmt.Sprintf("c%d.example.com", i)},
						"validity":           map[string]any{"type": "DAY", "value": 1}})
					mu.Lock()
					defer mu.Unlock()
					if err != nil || status != http.StatusOK {
						errs = append(errs, fmt.Sprintf("%d %v %v", status, m, err))
						return
					}
					ids = append(ids, m["certificate_id"].(string))
				}(i)
			}
			wg.Wait()
			require.Empty(t, errs)
			require.Len(t, ids, n)
			serials := map[string]bool{}
			m := p.ok(p.do("GET", pcaCerts+"?limit=1000", nil), http.StatusOK)
			assert.Equal(t, float64(n), m["total"])
			for _, c := range m["certificates"].([]any) {
				serials[c.(map[string]any)["serial_number"].(string)] = true
			}
			assert.Len(t, serials, n, "serial numbers are unique")
			used, err := p.Store.QuotaUsage(t.Context(), "t1", pcasvc.QuotaCertificates)
			require.NoError(t, err)
			assert.Equal(t, int64(n), used)
			count, err := p.Store.CountRecords(t.Context(), "pca_certificate", "t1")
			require.NoError(t, err)
			assert.Equal(t, int64(n), count)
			// Deleting gives the units back.
			for _, id := range ids[:10] {
				p.ok(p.do("DELETE", pcaCerts+"/"+id, nil), http.StatusNoContent)
			}
			used, err = p.Store.QuotaUsage(t.Context(), "t1", pcasvc.QuotaCertificates)
			require.NoError(t, err)
			assert.Equal(t, int64(n-10), used)
		})
	}
}

// The daemon-generated private key is in the store only sealed: neither
// its PKCS#8 DER, nor the bare private scalar, nor their base64 appear in
// the bolt file; and a sealed blob moved to another record does not open.
func TestPCALeafKeyNeverInStoreInClear(t *testing.T) {
	p := newPCA(t, "bolt")
	root := p.createRoot("Sealing Root")
	leaf := p.issueLeaf(root, "sealed.example.com")
	ex := p.ok(p.do("POST", pcaCerts+"/"+leaf+"/export", nil), http.StatusOK)
	kb, _ := pem.Decode([]byte(ex["private_key"].(string)))
	require.NotNil(t, kb)
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	require.NoError(t, err)
	scalar := key.(*ecdsa.PrivateKey).D.Bytes()
	require.NoError(t, p.Engine.Close()) // flush, so the file holds everything
	raw, err := os.ReadFile(p.Store.(*boltstore.Store).Path())
	require.NoError(t, err)
	for name, secret := range map[string][]byte{
		"PKCS#8 DER": kb.Bytes, "private scalar": scalar,
		"base64 PKCS#8": []byte(base64.StdEncoding.EncodeToString(kb.Bytes)),
		"base64 scalar": []byte(base64.StdEncoding.EncodeToString(scalar)),
	} {
		assert.False(t, bytes.Contains(raw, secret), "%s found in the store file", name)
	}
	assert.NotContains(t, p.Logs.String(), base64.StdEncoding.EncodeToString(kb.Bytes))
}
