package api_test

import (
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
)

// csrOf signs a CSR of tmpl with key.
func csrOf(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// rawName encodes a subject attribute by attribute, with the string types
// given (asn1.RawValue) or chosen by Go (string); Go's own encoder would
// not write some of them.
func rawName(t *testing.T, atvs ...pkix.AttributeTypeAndValue) []byte {
	t.Helper()
	seq := pkix.RDNSequence{}
	for _, a := range atvs {
		seq = append(seq, pkix.RelativeDistinguishedNameSET{a})
	}
	der, err := asn1.Marshal(seq)
	require.NoError(t, err)
	return der
}

var (
	oidAttrCN    = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidAttrO     = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidAttrTitle = asn1.ObjectIdentifier{2, 5, 4, 12}
	oidAttrEmail = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	oidAttrDC    = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
)

// hostileSubjectCSRs are CSRs whose subjects issuance must refuse, with the
// field the refusal names. A CSR's subject was copied byte for byte into
// the certificate: each of these was issued.
func hostileSubjectCSRs(t *testing.T) []struct{ name, csr, field string } {
	key := ecKey(t, elliptic.P256())
	name := func(cn string) *x509.CertificateRequest {
		return &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{"www.example.com"}}
	}
	raw := func(atvs ...pkix.AttributeTypeAndValue) *x509.CertificateRequest {
		return &x509.CertificateRequest{RawSubject: rawName(t, atvs...), DNSNames: []string{"www.example.com"}}
	}
	return []struct{ name, csr, field string }{
		{"NUL in the common name", csrOf(t, key, name("www.bank.com\x00.evil.com")), "csr.distinguished_name.common_name"},
		{"right-to-left override in the common name", csrOf(t, key, name("www.\u202emoc.knab")), "csr.distinguished_name.common_name"},
		{"1,000-character common name", csrOf(t, key, name(strings.Repeat("a", 1000))), "csr.distinguished_name.common_name"},
		{"65-character common name", csrOf(t, key, name(strings.Repeat("a", 65))), "csr.distinguished_name.common_name"},
		{"zero-width space in the common name", csrOf(t, key, name("www.exa\u200bmple.com")), "csr.distinguished_name.common_name"},
		{"escape in the organization", csrOf(t, key, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: "x", Organization: []string{"a\x1b[31mb"}}}), "csr.distinguished_name.organization"},
		{"C1 control in a T61String", csrOf(t, key, raw(pkix.AttributeTypeAndValue{Type: oidAttrO,
			Value: asn1.RawValue{Tag: asn1.TagT61String, Bytes: []byte{'a', 0x9b, 'b'}}})), "csr.distinguished_name.organization"},
		{"empty subject and no SAN", csrOf(t, key, &x509.CertificateRequest{}), "csr.distinguished_name"},
		{"two common names", csrOf(t, key, raw(pkix.AttributeTypeAndValue{Type: oidAttrCN, Value: "www.example.com"},
			pkix.AttributeTypeAndValue{Type: oidAttrCN, Value: "www.evil.com"})), "csr.distinguished_name.common_name"},
		{"an attribute not accepted", csrOf(t, key, raw(pkix.AttributeTypeAndValue{Type: oidAttrTitle, Value: "CEO"})), "csr.distinguished_name"},
		{"a value that is not a string", csrOf(t, key, raw(pkix.AttributeTypeAndValue{Type: oidAttrCN, Value: 7})), "csr.distinguished_name.common_name"},
		{"wildcard common name under a public suffix", csrOf(t, key, name("*.com")), "csr.distinguished_name.common_name"},
	}
}

// A CSR's subject and names meet the rules of body issuance; what passes
// is encoded afresh from the checked values.
func TestPCACSRSubjectRules(t *testing.T) {
	p := newPCA(t, "bolt")
	root := p.createRoot("Subject Rules Root")
	key := ecKey(t, elliptic.P256())
	issue := func(csr string, extra ...map[string]any) *apitest.Response {
		body := map[string]any{"issuer_id": root, "csr": csr, "validity": map[string]any{"type": "DAY", "value": 30}}
		for _, e := range extra {
			for k, v := range e {
				body[k] = v
			}
		}
		return p.do("POST", pcaCerts+"/csr", body)
	}
	before := p.ok(p.do("GET", pcaCerts+"?limit=0", nil), http.StatusOK)["total"]

	for _, tc := range hostileSubjectCSRs(t) {
		t.Run(tc.name, func(t *testing.T) {
			msg := pcaFail(t, issue(tc.csr), http.StatusBadRequest, api.PCACodeBadDN)
			assert.True(t, strings.HasPrefix(msg, tc.field+": "), "the answer names %s: %s", tc.field, msg)
			assert.NotContains(t, msg, "\x00")
			assert.NotContains(t, msg, "\u202e")
			if tc.name != "empty subject and no SAN" {
				// Parsing reports the same refusal.
				pcaFail(t, p.do("POST", pcaCerts+"/csr/parse", map[string]any{"csr": tc.csr}), http.StatusBadRequest, api.PCACodeBadDN)
			}
		})
	}

	sanCSR := func(dns ...string) string {
		return csrOf(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "svc"}, DNSNames: dns})
	}
	for _, tc := range []struct {
		name, csr   string
		extra       map[string]any
		code, field string
	}{
		{"NUL in a DNS name of the CSR", sanCSR("www.bank.com\x00.evil.com"), nil, api.PCACodeBadParameter, "csr.subject_alternative_names[0].value"},
		{"*.com in the CSR", sanCSR("www.example.com", "*.com"), nil, api.PCACodeBadParameter, "csr.subject_alternative_names[1].value"},
		{"*.co.uk in the CSR", sanCSR("*.co.uk"), nil, api.PCACodeBadParameter, "csr.subject_alternative_names[0].value"},
		{"*.github.io in the CSR", sanCSR("*.github.io"), nil, api.PCACodeBadParameter, "csr.subject_alternative_names[0].value"},
		{"trailing dot in the CSR", sanCSR("www.example.com."), nil, api.PCACodeBadParameter, "csr.subject_alternative_names[0].value"},
		{"*.com in the body's names", sanCSR("www.example.com"), map[string]any{"subject_alternative_names": []map[string]any{
			{"type": "DNS", "value": "*.com"}}}, api.PCACodeBadParameter, "subject_alternative_names[0].value"},
		{"intermediate CA without a subject", csrOf(t, key, &x509.CertificateRequest{DNSNames: []string{"ca.example.com"}}),
			map[string]any{"type": "INTERMEDIATE_CA"}, api.PCACodeBadDN, "csr.distinguished_name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := pcaFail(t, issue(tc.csr, tc.extra), http.StatusBadRequest, tc.code)
			assert.True(t, strings.HasPrefix(msg, tc.field+": "), "the answer names %s: %s", tc.field, msg)
		})
	}
	// A CSR whose UTF8String is not UTF-8 does not parse at all.
	bad := rawName(t, pkix.AttributeTypeAndValue{Type: oidAttrO, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte{'a', 0xff}}})
	pcaFail(t, issue(csrOf(t, key, &x509.CertificateRequest{RawSubject: bad})), http.StatusBadRequest, api.PCACodeBadCSR)
	assert.Equal(t, before, p.ok(p.do("GET", pcaCerts+"?limit=0", nil), http.StatusOK)["total"], "nothing was issued")

	export := func(r *apitest.Response) *x509.Certificate {
		t.Helper()
		id := p.ok(r, http.StatusOK)["certificate_id"].(string)
		return pcaParseCert(t, p.ok(p.do("POST", pcaCerts+"/"+id+"/export", nil), http.StatusOK)["certificate"].(string))
	}

	// A full subject: kept in order, each value re-encoded (the CSR's
	// BMPString organization becomes a UTF8String), the SAN a wildcard one
	// label below a public suffix.
	good := csrOf(t, key, &x509.CertificateRequest{RawSubject: rawName(t,
		pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "DE"},
		pkix.AttributeTypeAndValue{Type: oidAttrO, Value: asn1.RawValue{Tag: asn1.TagBMPString, Bytes: []byte{0, 'M', 0, 0xfc, 0, 'l'}}},
		pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "Web"},
		pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "Ops"},
		pkix.AttributeTypeAndValue{Type: oidAttrDC, Value: "corp"},
		pkix.AttributeTypeAndValue{Type: oidAttrEmail, Value: "ops@example.co.uk"},
		pkix.AttributeTypeAndValue{Type: oidAttrCN, Value: "*.example.co.uk"}),
		DNSNames: []string{"*.example.co.uk", "example.co.uk"}})
	cert := export(issue(good))
	var order []string
	for _, n := range cert.Subject.Names {
		order = append(order, n.Type.String())
	}
	assert.Equal(t, []string{"2.5.4.6", "2.5.4.10", "2.5.4.11", "2.5.4.11", oidAttrDC.String(), oidAttrEmail.String(), "2.5.4.3"}, order)
	assert.Equal(t, "*.example.co.uk", cert.Subject.CommonName)
	assert.Equal(t, []string{"Mül"}, cert.Subject.Organization)
	assert.Equal(t, []string{"Web", "Ops"}, cert.Subject.OrganizationalUnit)
	assert.Equal(t, []string{"*.example.co.uk", "example.co.uk"}, cert.DNSNames)
	m := p.ok(p.do("POST", pcaCerts+"/csr/parse", map[string]any{"csr": good}), http.StatusOK)
	assert.Subset(t, m["distinguished_name"], map[string]any{"common_name": "*.example.co.uk", "country": "DE", "organization": "Mül",
		"organizational_unit": "Web"})

	// An empty subject with a name: the SAN extension is then critical.
	cert = export(issue(csrOf(t, key, &x509.CertificateRequest{DNSNames: []string{"bare.example.com"}})))
	assert.Empty(t, cert.Subject.Names)
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			assert.True(t, ext.Critical, "a SAN with an empty subject is critical")
		}
	}
	// A bare public suffix is one host name like any other, not a
	// wildcard: it is accepted.
	cert = export(issue(sanCSR("com", "internal")))
	assert.Equal(t, []string{"com", "internal"}, cert.DNSNames)
}

// Body issuance: the same text and wildcard rules.
func TestPCABodyNameRules(t *testing.T) {
	p := newPCA(t, "bolt")
	root := p.createRoot("Body Rules Root")
	leaf := func(cn string, sans ...map[string]any) map[string]any {
		return map[string]any{"issuer_id": root, "distinguished_name": map[string]any{"common_name": cn},
			"validity": map[string]any{"type": "DAY", "value": 1}, "subject_alternative_names": sans}
	}
	dns := func(v string) map[string]any { return map[string]any{"type": "DNS", "value": v} }
	for _, tc := range []struct {
		name        string
		body        map[string]any
		code, field string
	}{
		{"right-to-left override in the common name", leaf("www.\u202emoc.knab"), api.PCACodeBadDN, "distinguished_name.common_name"},
		{"left-to-right isolate in the common name", leaf("a\u2066b"), api.PCACodeBadDN, "distinguished_name.common_name"},
		{"byte order mark in the common name", leaf("\ufeffwww.example.com"), api.PCACodeBadDN, "distinguished_name.common_name"},
		{"wildcard common name under a public suffix", leaf("*.com", dns("www.example.com")), api.PCACodeBadDN, "distinguished_name.common_name"},
		{"*.com", leaf("x", dns("*.com")), api.PCACodeBadParameter, "subject_alternative_names[0].value"},
		{"*.co.uk", leaf("x", dns("www.example.com"), dns("*.co.uk")), api.PCACodeBadParameter, "subject_alternative_names[1].value"},
		{"*.github.io", leaf("x", dns("*.github.io")), api.PCACodeBadParameter, "subject_alternative_names[0].value"},
		{"*.internal", leaf("x", dns("*.internal")), api.PCACodeBadParameter, "subject_alternative_names[0].value"},
		{"trailing dot", leaf("x", dns("www.example.com.")), api.PCACodeBadParameter, "subject_alternative_names[0].value"},
		{"non-ASCII email", leaf("x", map[string]any{"type": "EMAIL", "value": "jürgen@example.com"}), api.PCACodeBadParameter, "subject_alternative_names[0].value"},
		{"non-ASCII URI", leaf("x", map[string]any{"type": "URI", "value": "https://exämple.com/"}), api.PCACodeBadParameter, "subject_alternative_names[0].value"},
		{"bidi override in a URI", leaf("x", map[string]any{"type": "URI", "value": "https://example.com/\u202efdp.exe"}), api.PCACodeBadParameter, "subject_alternative_names[0].value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := pcaFail(t, p.do("POST", pcaCerts, tc.body), http.StatusBadRequest, tc.code)
			assert.True(t, strings.HasPrefix(msg, tc.field+": "), "the answer names %s: %s", tc.field, msg)
		})
	}
	for _, ok := range []map[string]any{
		leaf("Müller GmbH 東京", dns("*.example.com")),
		leaf("*.example.co.uk", dns("*.example.co.uk")),
		leaf("*.me.github.io", dns("*.me.github.io")),
		leaf("x", dns("com"), map[string]any{"type": "EMAIL", "value": "a@example.com"},
			map[string]any{"type": "URI", "value": "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"}),
	} {
		p.ok(p.do("POST", pcaCerts, ok), http.StatusOK)
	}
}
