package issuance

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net"
	"strings"
	"unicode/utf8"
)

// The subject of a CSR, checked attribute by attribute and encoded
// afresh, and the wildcard rule of common names. Issuance from a request
// body and from a CSR apply the same rules to the names a certificate
// carries (text of attributes here and in DistinguishedName.Check, SANs in
// san.go, name constraints in constraints.go).

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
// of DistinguishedName, with the bounds body issuance uses (RFC 5280's
// upper bounds), and four common in CSRs. Any other attribute is refused
// rather than copied unread.
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
		return refuse(BadName, field, nil, "must not be empty")
	case UnsafeText(v):
		return refuse(BadName, field, nil, UnsafeTextMsg)
	case strings.TrimSpace(v) != v:
		return refuse(BadName, field, nil, "must not start or end with spaces")
	case utf8.RuneCountInString(v) > a.max:
		return refuse(BadName, field, nil, fmt.Sprintf("must be at most %d characters", a.max))
	}
	switch a.kind {
	case attrCountry:
		if len(v) != 2 || !isUpperAlpha(v) {
			return refuse(BadName, field, nil, "must be an ISO 3166 alpha-2 code in capitals")
		}
	case attrPrintable:
		if !PrintableString(v) {
			return refuse(BadName, field, nil, "must be an ASN.1 PrintableString (letters, digits, space and '()+,-./:=?)")
		}
	case attrEmail:
		if !validEmail(v) {
			return refuse(BadName, field, nil, "is not an email address")
		}
	case attrLabel:
		if !validLabel(v) {
			return refuse(BadName, field, nil, "is not a DNS label")
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
	if PrintableString(v) {
		return asn1.TagPrintableString
	}
	return asn1.TagUTF8String
}

// Subject is the subject of a CSR, checked and encoded afresh.
type Subject struct {
	Raw    []byte            // the DER subject to sign
	RDNs   pkix.RDNSequence  // Raw read back (string values), for name constraints
	DN     DistinguishedName // what the certificate record shows
	Emails []string          // its email_address values
	Empty  bool
}

// CheckSubject reads the subject of a CSR attribute by attribute and
// builds the subject to sign from the checked values, in the CSR's order,
// one attribute per RDN: nothing of the CSR's own encoding goes into the
// certificate. field names the subject in refusals (an attribute is
// field.common_name and so on).
func CheckSubject(field string, raw []byte) (*Subject, error) {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &seq); err != nil || len(rest) > 0 {
		return nil, refuse(BadName, field, nil, "cannot be read")
	}
	out := &Subject{RDNs: pkix.RDNSequence{}}
	enc := pkix.RDNSequence{}
	seen := map[string]bool{}
	for _, rdn := range seq {
		for _, atv := range rdn {
			if len(enc) == maxSubjectAttrs {
				return nil, refuse(BadName, field, nil, fmt.Sprintf("must have at most %d attributes", maxSubjectAttrs))
			}
			a := subjectAttrOf(atv.Type)
			if a == nil {
				return nil, refuse(BadName, field, nil, fmt.Sprintf("holds attribute %s, which is not accepted (accepted: %s)",
					atv.Type, acceptedAttrNames()))
			}
			af := field + "." + a.name
			v, ok := atv.Value.(string)
			if !ok {
				return nil, refuse(BadName, af, nil, "must be a string")
			}
			if seen[a.name] && !a.repeat {
				return nil, refuse(BadName, af, nil, "must appear at most once")
			}
			seen[a.name] = true
			if err := a.check(af, v); err != nil {
				return nil, err
			}
			enc = append(enc, pkix.RelativeDistinguishedNameSET{{Type: a.oid,
				Value: asn1.RawValue{Tag: a.tag(v), Bytes: []byte(v)}}})
			out.RDNs = append(out.RDNs, pkix.RelativeDistinguishedNameSET{{Type: a.oid, Value: v}})
			out.set(a.name, v)
		}
	}
	der, err := asn1.Marshal(enc)
	if err != nil {
		return nil, refuse(BadName, field, nil, "cannot be encoded")
	}
	out.Raw, out.Empty = der, len(enc) == 0
	return out, nil
}

func (s *Subject) set(name, v string) {
	first := func(dst *string) {
		if *dst == "" {
			*dst = v
		}
	}
	switch name {
	case "common_name":
		first(&s.DN.CommonName)
	case "country":
		first(&s.DN.Country)
	case "state":
		first(&s.DN.State)
	case "locality":
		first(&s.DN.Locality)
	case "organization":
		first(&s.DN.Organization)
	case "organizational_unit":
		first(&s.DN.OrganizationalUnit)
	case "email_address":
		s.Emails = append(s.Emails, v)
	}
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

// CheckCommonName applies the wildcard rule of DNS names to a common name
// that is a wildcard host name.
func CheckCommonName(field, cn string) error {
	if dns, _ := hostOf(cn); dns != "" {
		if suffix, bad := wildcardOverSuffix(dns); bad {
			return refuse(BadName, field, nil, wildcardMsg(suffix))
		}
	}
	return nil
}
