package pca

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"github.com/hsmca/hsmca/signer/issuance"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/publicsuffix"
)

// The rules for the names a PCA certificate carries: the text of subject
// attributes, the subject of a CSR (checked attribute by attribute and
// encoded afresh), subject alternative names, wildcards under public
// suffixes. Body issuance and CSR issuance apply the same ones.

// Attribute kinds of a subject: how a value is checked and encoded.
type attrKind int

const (
	attrText      attrKind = iota // printable text, PrintableString or UTF8String
	attrCountry                   // ISO 3166 alpha-2 in capitals, PrintableString
	attrPrintable                 // ASN.1 PrintableString characters only
	attrEmail                     // an email address, IA5String
	attrLabel                     // one DNS label, IA5String
)

// subjectAttr is an attribute a CSR's subject may hold.
type subjectAttr struct {
	oid    asn1.ObjectIdentifier
	name   string // the field name in errors
	max    int    // characters
	repeat bool   // may appear more than once
	kind   attrKind
}

// csrSubjectAttrs are the attributes accepted in a CSR's subject: the six
// of the family's distinguished_name, with the bounds body issuance uses
// (RFC 5280's upper bounds), and four common in CSRs. Any other attribute
// is refused rather than copied unread.
var csrSubjectAttrs = []subjectAttr{
	{asn1.ObjectIdentifier{2, 5, 4, 3}, "common_name", 64, false, attrText},
	{asn1.ObjectIdentifier{2, 5, 4, 6}, "country", 2, false, attrCountry},
	{asn1.ObjectIdentifier{2, 5, 4, 8}, "state", 128, false, attrText},
	{asn1.ObjectIdentifier{2, 5, 4, 7}, "locality", 128, false, attrText},
	{asn1.ObjectIdentifier{2, 5, 4, 10}, "organization", 64, false, attrText},
	{asn1.ObjectIdentifier{2, 5, 4, 11}, "organizational_unit", 64, true, attrText},
	{asn1.ObjectIdentifier{2, 5, 4, 5}, "serial_number", 64, false, attrPrintable},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, "email_address", 255, false, attrEmail},
	{asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, "domain_component", 63, true, attrLabel},
	{asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, "user_id", 64, false, attrText},
}

// maxSubjectAttrs bounds the attributes of one subject.
const maxSubjectAttrs = 16

const csrDNField = "csr.distinguished_name"

func subjectAttrOf(oid asn1.ObjectIdentifier) *subjectAttr {
	for i := range csrSubjectAttrs {
		if csrSubjectAttrs[i].oid.Equal(oid) {
			return &csrSubjectAttrs[i]
		}
	}
	return nil
}

func acceptedAttrNames() string {
	names := make([]string, len(csrSubjectAttrs))
	for i, a := range csrSubjectAttrs {
		names[i] = a.name
	}
	return strings.Join(names, ", ")
}

// check validates one value of the attribute.
func (a *subjectAttr) check(field, v string) error {
	switch {
	case v == "":
		return refused(ReasonBadDN, field, nil, "must not be empty")
	case issuance.UnsafeText(v):
		return refused(ReasonBadDN, field, nil, issuance.UnsafeTextMsg)
	case strings.TrimSpace(v) != v:
		return refused(ReasonBadDN, field, nil, "must not start or end with spaces")
	case utf8.RuneCountInString(v) > a.max:
		return refused(ReasonBadDN, field, nil, fmt.Sprintf("must be at most %d characters", a.max))
	}
	switch a.kind {
	case attrCountry:
		if len(v) != 2 || !isUpperAlpha(v) {
			return refused(ReasonBadDN, field, nil, "must be an ISO 3166 alpha-2 code in capitals")
		}
	case attrPrintable:
		if !issuance.PrintableString(v) {
			return refused(ReasonBadDN, field, nil, "must be an ASN.1 PrintableString (letters, digits, space and '()+,-./:=?)")
		}
	case attrEmail:
		if !validEmail(v) {
			return refused(ReasonBadDN, field, nil, "is not an email address")
		}
	case attrLabel:
		if !validLabel(v) {
			return refused(ReasonBadDN, field, nil, "is not a DNS label")
		}
	}
	return nil
}

// tag is the ASN.1 string type the value is encoded with.
func (a *subjectAttr) tag(v string) int {
	switch a.kind {
	case attrCountry, attrPrintable:
		return asn1.TagPrintableString
	case attrEmail, attrLabel:
		return asn1.TagIA5String
	}
	if issuance.PrintableString(v) {
		return asn1.TagPrintableString
	}
	return asn1.TagUTF8String
}

// csrSubject is the subject of a CSR, checked and encoded afresh.
type csrSubject struct {
	raw    []byte            // the DER subject to sign
	dn     DistinguishedName // what the certificate record shows
	emails []string          // its email_address values
	empty  bool
}

// checkCSRSubject reads the subject of a CSR attribute by attribute and
// builds the subject to sign from the checked values, in the CSR's order,
// one attribute per RDN: nothing of the CSR's own encoding goes into the
// certificate.
func checkCSRSubject(raw []byte) (*csrSubject, error) {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &seq); err != nil || len(rest) > 0 {
		return nil, refused(ReasonBadDN, csrDNField, nil, "cannot be read")
	}
	out := &csrSubject{}
	enc := pkix.RDNSequence{}
	seen := map[string]bool{}
	for _, rdn := range seq {
		for _, atv := range rdn {
			if len(enc) == maxSubjectAttrs {
				return nil, refused(ReasonBadDN, csrDNField, nil, fmt.Sprintf("must have at most %d attributes", maxSubjectAttrs))
			}
			a := subjectAttrOf(atv.Type)
			if a == nil {
				return nil, refused(ReasonBadDN, csrDNField, nil, fmt.Sprintf("holds attribute %s, which is not accepted (accepted: %s)",
					atv.Type, acceptedAttrNames()))
			}
			field := csrDNField + "." + a.name
			v, ok := atv.Value.(string)
			if !ok {
				return nil, refused(ReasonBadDN, field, nil, "must be a string")
			}
			if seen[a.name] && !a.repeat {
				return nil, refused(ReasonBadDN, field, nil, "must appear at most once")
			}
			seen[a.name] = true
			if err := a.check(field, v); err != nil {
				return nil, err
			}
			enc = append(enc, pkix.RelativeDistinguishedNameSET{{Type: a.oid,
				Value: asn1.RawValue{Tag: a.tag(v), Bytes: []byte(v)}}})
			out.set(a.name, v)
		}
	}
	der, err := asn1.Marshal(enc)
	if err != nil {
		return nil, refused(ReasonBadDN, csrDNField, nil, "cannot be encoded")
	}
	out.raw, out.empty = der, len(enc) == 0
	return out, nil
}

func (s *csrSubject) set(name, v string) {
	first := func(dst *string) {
		if *dst == "" {
			*dst = v
		}
	}
	switch name {
	case "common_name":
		first(&s.dn.CommonName)
	case "country":
		first(&s.dn.Country)
	case "state":
		first(&s.dn.State)
	case "locality":
		first(&s.dn.Locality)
	case "organization":
		first(&s.dn.Organization)
	case "organizational_unit":
		first(&s.dn.OrganizationalUnit)
	case "email_address":
		s.emails = append(s.emails, v)
	}
}

// checkSANs validates the requested names and sorts them into a template.
// field names the list in errors: subject_alternative_names for the body's,
// csr.subject_alternative_names for names taken from the CSR.
func checkSANs(field string, sans []SAN, t *x509.Certificate) error {
	if len(sans) > maxSANs {
		return refused(ReasonBadParameter, field, len(sans), fmt.Sprintf("at most %d names", maxSANs))
	}
	for i, s := range sans {
		vf := fmt.Sprintf("%s[%d].value", field, i)
		if s.Value == "" || len(s.Value) > 255 || issuance.UnsafeText(s.Value) {
			return refused(ReasonBadParameter, vf, nil, "must be 1 to 255 printable characters")
		}
		switch s.Type {
		case "DNS":
			if !validDNSName(s.Value) {
				return refused(ReasonBadParameter, vf, s.Value, "is not a DNS name")
			}
			if suffix, bad := wildcardOverSuffix(s.Value); bad {
				return refused(ReasonBadParameter, vf, s.Value, wildcardMsg(suffix))
			}
			t.DNSNames = append(t.DNSNames, s.Value)
		case "IP":
			ip := net.ParseIP(s.Value)
			if ip == nil {
				return refused(ReasonBadIP, vf, s.Value, "is not an IP address")
			}
			t.IPAddresses = append(t.IPAddresses, ip)
		case "EMAIL":
			if !validEmail(s.Value) {
				return refused(ReasonBadParameter, vf, s.Value, "is not an email address")
			}
			t.EmailAddresses = append(t.EmailAddresses, s.Value)
		case "URI":
			u, ok := parseURISAN(s.Value)
			if !ok {
				return refused(ReasonBadParameter, vf, s.Value, "is not an absolute URI")
			}
			t.URIs = append(t.URIs, u)
		default:
			return refused(ReasonBadSANType, fmt.Sprintf("%s[%d].type", field, i), s.Type,
				"must be DNS, IP, EMAIL or URI")
		}
	}
	return nil
}

// isASCIIGraphic reports printable ASCII without spaces, what an IA5String
// name of a certificate may hold here.
func isASCIIGraphic(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// validEmail accepts a bare ASCII mailbox whose domain is a host name.
func validEmail(s string) bool {
	if !isASCIIGraphic(s) {
		return false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	domain := s[at+1:]
	return !strings.HasPrefix(domain, "*.") && validDNSName(domain)
}

// parseURISAN accepts an absolute ASCII URI with a host or an opaque part.
func parseURISAN(s string) (*url.URL, bool) {
	if !isASCIIGraphic(s) {
		return nil, false
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "") {
		return nil, false
	}
	return u, true
}

// validDNSName accepts host names in the preferred name syntax (no
// trailing dot), with one leading wildcard label.
func validDNSName(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !validLabel(l) {
			return false
		}
	}
	return true
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		r := l[i]
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// wildcardOverSuffix reports a wildcard directly under a public suffix:
// under a single label (a top-level domain, listed or not: *.com,
// *.internal) or under a suffix of the Public Suffix List, in its ICANN
// section (*.co.uk) or its private one (*.github.io), where one name would
// cover every registrant's sites. A wildcard one label further down
// (*.example.co.uk) is fine.
func wildcardOverSuffix(name string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.ToLower(name), "*.")
	if !ok {
		return "", false
	}
	if !strings.Contains(rest, ".") {
		return rest, true
	}
	if ps, _ := publicsuffix.PublicSuffix(rest); ps == rest {
		return rest, true
	}
	return "", false
}

func wildcardMsg(suffix string) string {
	return fmt.Sprintf("is a wildcard directly under the public suffix %q; name a domain below it", suffix)
}

// hostOf says what a common name stands for when it looks like a host: an
// IP address, or a DNS name of two labels or more. Other common names
// ("Alice", "Issuing CA") are not names of a host.
func hostOf(cn string) (dns string, ip net.IP) {
	if ip := net.ParseIP(cn); ip != nil {
		return "", ip
	}
	if strings.Contains(cn, ".") && validDNSName(cn) {
		return cn, nil
	}
	return "", nil
}

// checkCommonName applies the wildcard rule of DNS names to a common name
// that is a wildcard host name.
func checkCommonName(field, cn string) error {
	if dns, _ := hostOf(cn); dns != "" {
		if suffix, bad := wildcardOverSuffix(dns); bad {
			return refused(ReasonBadDN, field, nil, wildcardMsg(suffix))
		}
	}
	return nil
}
