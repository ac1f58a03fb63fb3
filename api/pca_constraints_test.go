package api_test

import (
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
)

// softRoot is a root outside hsmca, with mod applied to its template.
func softRoot(t *testing.T, mod func(*x509.Certificate)) *softCA {
	key := ecKey(t, elliptic.P256())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(11), Subject: pkix.Name{CommonName: "Constraining Root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(3 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &softCA{key: key, cert: cert}
}

// signCA certifies the pending CA's CSR as a CA, with mod applied.
func (s *softCA) signCA(t *testing.T, csrPEM string, mod func(*x509.Certificate)) string {
	b, _ := pem.Decode([]byte(csrPEM))
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 2, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.cert, csr.PublicKey, s.key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// importConstrained makes a PENDING CA and imports its certificate from
// outside, signed by ext with mod applied.
func (p *pcaEnv) importConstrained(cn string, ext *softCA, mod func(*x509.Certificate), chain bool) string {
	p.t.Helper()
	ca := p.createPending(cn)
	csr := p.ok(p.do("GET", pcaCAs+"/"+ca+"/csr", nil), http.StatusOK)["csr"].(string)
	body := map[string]any{"certificate": ext.signCA(p.t, csr, mod)}
	if chain {
		body["certificate_chain"] = ext.pem()
	}
	p.ok(p.do("POST", pcaCAs+"/"+ca+"/import", body), http.StatusNoContent)
	return ca
}

// A CA's name constraints, and those of the CAs above it, bind what hsmca
// issues under it: an imported CA limited to example.com issued evil.org.
func TestPCANameConstraintsAtIssuance(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			ext := newSoftCA(t)
			_, tenNet, _ := net.ParseCIDR("10.0.0.0/8")
			ca := p.importConstrained("Constrained CA", ext, func(c *x509.Certificate) {
				c.PermittedDNSDomainsCritical = true
				c.PermittedDNSDomains = []string{"example.com"}
				c.ExcludedDNSDomains = []string{"bad.example.com"}
				c.PermittedIPRanges = []*net.IPNet{tenNet}
				c.PermittedEmailAddresses = []string{"example.com"}
				c.PermittedURIDomains = []string{".example.com"}
			}, true)
			body := func(issuer, cn string, sans ...[2]string) map[string]any {
				list := []map[string]any{}
				for _, s := range sans {
					list = append(list, map[string]any{"type": s[0], "value": s[1]})
				}
				return map[string]any{"issuer_id": issuer, "distinguished_name": map[string]any{"common_name": cn},
					"validity": map[string]any{"type": "DAY", "value": 30}, "subject_alternative_names": list}
			}
			d := func(v string) [2]string { return [2]string{"DNS", v} }
			const nc = api.PCACodeNameConstraint
			for _, tc := range []struct {
				name  string
				body  map[string]any
				field string // "" when it issues
			}{
				{"evil.org", body(ca, "Leaf", d("evil.org")), "subject_alternative_names[0].value"},
				{"a name merely ending in example.com", body(ca, "Leaf", d("notexample.com")), "subject_alternative_names[0].value"},
				{"an excluded subdomain", body(ca, "Leaf", d("www.example.com"), d("bad.example.com")), "subject_alternative_names[1].value"},
				{"below an excluded subdomain", body(ca, "Leaf", d("x.bad.example.com")), "subject_alternative_names[0].value"},
				{"a wildcard covering an excluded name", body(ca, "Leaf", d("*.example.com")), "subject_alternative_names[0].value"},
				{"an IP outside the range", body(ca, "Leaf", [2]string{"IP", "192.168.1.1"}), "subject_alternative_names[0].value"},
				{"an IPv6 address against IPv4 ranges", body(ca, "Leaf", [2]string{"IP", "2001:db8::1"}), "subject_alternative_names[0].value"},
				{"an email at a subdomain (RFC 5280: the host only)", body(ca, "Leaf", [2]string{"EMAIL", "a@sub.example.com"}), "subject_alternative_names[0].value"},
				{"an email elsewhere", body(ca, "Leaf", [2]string{"EMAIL", "a@evil.org"}), "subject_alternative_names[0].value"},
				{"a URI at the constraint's own host", body(ca, "Leaf", [2]string{"URI", "https://example.com/"}), "subject_alternative_names[0].value"},
				{"a URI without a host", body(ca, "Leaf", [2]string{"URI", "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"}), "subject_alternative_names[0].value"},
				{"a URI with an IP host", body(ca, "Leaf", [2]string{"URI", "https://10.0.0.1/"}), "subject_alternative_names[0].value"},
				{"a host name common name outside", body(ca, "evil.org", d("www.example.com")), "distinguished_name.common_name"},
				{"an IP common name outside", body(ca, "192.168.1.1", d("www.example.com")), "distinguished_name.common_name"},
				{"within", body(ca, "www.example.com", d("www.example.com"), d("example.com"), d("*.www.example.com"),
					[2]string{"IP", "10.1.2.3"}, [2]string{"EMAIL", "a@example.com"}, [2]string{"URI", "https://api.example.com/x"}), ""},
				{"a common name that is no host name", body(ca, "Alice Example", d("www.example.com")), ""},
				{"no names at all but the common name", body(ca, "Device 7"), ""},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := p.do("POST", pcaCerts, tc.body)
					if tc.field == "" {
						p.ok(r, http.StatusOK)
						return
					}
					msg := pcaFail(t, r, http.StatusBadRequest, nc)
					assert.True(t, strings.HasPrefix(msg, tc.field+": "), "the answer names %s: %s", tc.field, msg)
					assert.Contains(t, msg, "Constrained CA")
				})
			}

			// From a CSR: its names, and the email address in its subject.
			key := ecKey(t, elliptic.P256())
			csrIssue := func(issuer string, tmpl *x509.CertificateRequest, extra map[string]any) *apitest.Response {
				b := map[string]any{"issuer_id": issuer, "csr": csrOf(t, key, tmpl), "validity": map[string]any{"type": "DAY", "value": 30}}
				for k, v := range extra {
					b[k] = v
				}
				return p.do("POST", pcaCerts+"/csr", b)
			}
			msg := pcaFail(t, csrIssue(ca, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "Leaf"},
				DNSNames: []string{"evil.org"}}, nil), http.StatusBadRequest, nc)
			assert.True(t, strings.HasPrefix(msg, "csr.subject_alternative_names[0].value: "), msg)
			msg = pcaFail(t, csrIssue(ca, &x509.CertificateRequest{RawSubject: rawName(t,
				pkix.AttributeTypeAndValue{Type: oidAttrEmail, Value: "a@evil.org"}), DNSNames: []string{"www.example.com"}}, nil),
				http.StatusBadRequest, nc)
			assert.True(t, strings.HasPrefix(msg, "csr.distinguished_name.email_address: "), msg)
			msg = pcaFail(t, csrIssue(ca, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "External Sub"},
				DNSNames: []string{"evil.org"}}, map[string]any{"type": "INTERMEDIATE_CA"}), http.StatusBadRequest, nc)
			assert.True(t, strings.HasPrefix(msg, "csr.subject_alternative_names[0].value: "), msg)
			p.ok(csrIssue(ca, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "External Sub"}},
				map[string]any{"type": "INTERMEDIATE_CA"}), http.StatusOK)
			leafID := p.ok(csrIssue(ca, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "api.example.com"},
				DNSNames: []string{"api.example.com"}}, nil), http.StatusOK)["certificate_id"].(string)

			// A subordinate hsmca makes under the constrained CA carries no
			// constraints of its own; what it issues is still bound.
			pcaFail(t, p.do("POST", pcaCAs, map[string]any{"type": "SUBORDINATE", "distinguished_name": pcaFullDN("evil.org"),
				"key_algorithm": "EC256", "signature_algorithm": "SHA256", "validity": map[string]any{"type": "MONTH", "value": 6}, "issuer_id": ca}),
				http.StatusBadRequest, nc)
			sub := p.createSub("Generated Sub", ca, 0, map[string]any{"validity": map[string]any{"type": "MONTH", "value": 6}})
			msg = pcaFail(t, p.do("POST", pcaCerts, body(sub, "Leaf", d("evil.org"))), http.StatusBadRequest, nc)
			assert.Contains(t, msg, "Constrained CA")
			pcaFail(t, csrIssue(sub, &x509.CertificateRequest{DNSNames: []string{"www.evil.org"}}, nil), http.StatusBadRequest, nc)
			deep := p.issueLeaf(sub, "deep.example.com")

			// What issues verifies with Go, which checks the constraints.
			roots := x509.NewCertPool()
			roots.AddCert(ext.cert)
			for _, id := range []string{leafID, deep} {
				ex := p.ok(p.do("POST", pcaCerts+"/"+id+"/export", nil), http.StatusOK)
				inter := x509.NewCertPool()
				require.True(t, inter.AppendCertsFromPEM([]byte(ex["certificate_chain"].(string))))
				_, err := pcaParseCert(t, ex["certificate"].(string)).Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
				require.NoError(t, err)
			}
		})
	}
}

// The constraints of a root outside hsmca, given as an imported CA's
// chain, bind the imported CA's issuance too.
func TestPCANameConstraintsOfImportedChain(t *testing.T) {
	p := newPCA(t, "bolt")
	ext := softRoot(t, func(c *x509.Certificate) {
		c.PermittedDNSDomainsCritical = true
		c.PermittedDNSDomains = []string{"example.com"}
	})
	ca := p.importConstrained("Unconstrained Below A Constrained Root", ext, nil, true)
	msg := pcaFail(t, p.do("POST", pcaCerts, map[string]any{"issuer_id": ca, "distinguished_name": map[string]any{"common_name": "x"},
		"validity": map[string]any{"type": "DAY", "value": 1}, "subject_alternative_names": []map[string]any{{"type": "DNS", "value": "evil.org"}}}),
		http.StatusBadRequest, api.PCACodeNameConstraint)
	assert.Contains(t, msg, "Constraining Root")
	p.issueLeaf(ca, "www.example.com")
}

// Directory name constraints (which Go's verifier does not check) bind the
// subject.
func TestPCADirectoryNameConstraints(t *testing.T) {
	p := newPCA(t, "bolt")
	ext := newSoftCA(t)
	permitted := pkix.Name{Country: []string{"DE"}, Organization: []string{"Acme"}}.ToRDNSequence()
	nameDER, err := asn1.Marshal(permitted)
	require.NoError(t, err)
	base, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: nameDER})
	require.NoError(t, err)
	subtree, err := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: base})
	require.NoError(t, err)
	permittedDER, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: subtree})
	require.NoError(t, err)
	value, err := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: permittedDER})
	require.NoError(t, err)
	ca := p.importConstrained("Acme CA", ext, func(c *x509.Certificate) {
		c.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 30}, Value: value}}
	}, false)
	leaf := func(dn map[string]any) map[string]any {
		return map[string]any{"issuer_id": ca, "distinguished_name": dn, "validity": map[string]any{"type": "DAY", "value": 1}}
	}
	p.ok(p.do("POST", pcaCerts, leaf(map[string]any{"common_name": "x", "country": "DE", "organization": "Acme"})), http.StatusOK)
	msg := pcaFail(t, p.do("POST", pcaCerts, leaf(map[string]any{"common_name": "x", "country": "DE", "organization": "Other"})),
		http.StatusBadRequest, api.PCACodeNameConstraint)
	assert.True(t, strings.HasPrefix(msg, "distinguished_name: "), msg)
	pcaFail(t, p.do("POST", pcaCerts, leaf(map[string]any{"common_name": "x"})), http.StatusBadRequest, api.PCACodeNameConstraint)
	key := ecKey(t, elliptic.P256())
	issue := func(subj pkix.Name) *apitest.Response {
		return p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": ca, "validity": map[string]any{"type": "DAY", "value": 1},
			"csr": csrOf(t, key, &x509.CertificateRequest{Subject: subj, DNSNames: []string{"a.example"}})})
	}
	p.ok(issue(pkix.Name{Country: []string{"DE"}, Organization: []string{"Acme"}, CommonName: "y"}), http.StatusOK)
	msg = pcaFail(t, issue(pkix.Name{Country: []string{"FR"}, Organization: []string{"Acme"}, CommonName: "y"}),
		http.StatusBadRequest, api.PCACodeNameConstraint)
	assert.True(t, strings.HasPrefix(msg, "csr.distinguished_name: "), msg)
	// An empty subject is not bound by directory name constraints.
	p.ok(p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": ca, "validity": map[string]any{"type": "DAY", "value": 1},
		"csr": csrOf(t, key, &x509.CertificateRequest{DNSNames: []string{"b.example"}})}), http.StatusOK)
}
