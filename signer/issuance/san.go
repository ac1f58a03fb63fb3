package issuance

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// SAN is one subject alternative name: Type DNS, IP, EMAIL or URI. Its
// JSON form is part of stored records: keep the tags.
type SAN struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// MaxSANs bounds the names of a certificate hsmca issues.
const MaxSANs = 20

// AddSANs validates names given under field and adds them to t. field
// names the list in refusals: subject_alternative_names for a body's,
// csr.subject_alternative_names for names taken from a CSR.
func AddSANs(field string, sans []SAN, t *x509.Certificate) error {
	if len(sans) > MaxSANs {
		return refuse(BadValue, field, len(sans), fmt.Sprintf("at most %d names", MaxSANs))
	}
	for i, s := range sans {
		if err := addSAN(fmt.Sprintf("%s[%d]", field, i), s, t); err != nil {
			return err
		}
	}
	return nil
}

func addSAN(field string, s SAN, t *x509.Certificate) error {
	value := field + ".value"
	if s.Value == "" || len(s.Value) > 255 || UnsafeText(s.Value) {
		return refuse(BadValue, value, nil, "must be 1 to 255 printable characters")
	}
	switch s.Type {
	case "DNS":
		if !validDNSName(s.Value) {
			return refuse(BadValue, value, s.Value, "is not a DNS name")
		}
		if suffix, bad := wildcardOverSuffix(s.Value); bad {
			return refuse(BadValue, value, s.Value, wildcardMsg(suffix))
		}
		t.DNSNames = append(t.DNSNames, s.Value)
	case "IP":
		ip := net.ParseIP(s.Value)
		if ip == nil {
			return refuse(BadIP, value, s.Value, "is not an IP address")
		}
		t.IPAddresses = append(t.IPAddresses, ip)
	case "EMAIL":
		if !validEmail(s.Value) {
			return refuse(BadValue, value, s.Value, "is not an email address")
		}
		t.EmailAddresses = append(t.EmailAddresses, s.Value)
	case "URI":
		u, ok := parseURISAN(s.Value)
		if !ok {
			return refuse(BadValue, value, s.Value, "is not an absolute URI")
		}
		t.URIs = append(t.URIs, u)
	default:
		return refuse(BadSANType, field+".type", s.Type, "must be DNS, IP, EMAIL or URI")
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

// SANsOf lists the names of a certificate or CSR in SAN form: DNS, then
// IP, EMAIL and URI, each in its order.
func SANsOf(dns []string, ips []net.IP, emails []string, uris []*url.URL) []SAN {
	var out []SAN
	for _, v := range dns {
		out = append(out, SAN{"DNS", v})
	}
	for _, v := range ips {
		out = append(out, SAN{"IP", v.String()})
	}
	for _, v := range emails {
		out = append(out, SAN{"EMAIL", v})
	}
	for _, v := range uris {
		out = append(out, SAN{"URI", v.String()})
	}
	return out
}
