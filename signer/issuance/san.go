package issuance

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"unicode/utf8"
)

// SAN is one subject alternative name: Type DNS, IP, EMAIL or URI. Its
// JSON form is part of stored records: keep the tags.
type SAN struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// MaxSANs bounds the names of a certificate hsmca issues.
const MaxSANs = 20

// AddSANs validates names given under field and adds them to t.
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
	if s.Value == "" || len(s.Value) > 255 || !utf8.ValidString(s.Value) || HasControl(s.Value) {
		return refuse(BadValue, value, s.Value, "must be 1 to 255 printable characters")
	}
	switch s.Type {
	case "DNS":
		if !validDNSName(s.Value) {
			return refuse(BadValue, value, s.Value, "is not a DNS name")
		}
		t.DNSNames = append(t.DNSNames, s.Value)
	case "IP":
		ip := net.ParseIP(s.Value)
		if ip == nil {
			return refuse(BadIP, value, s.Value, "is not an IP address")
		}
		t.IPAddresses = append(t.IPAddresses, ip)
	case "EMAIL":
		if a, err := mail.ParseAddress(s.Value); err != nil || a.Address != s.Value || a.Name != "" {
			return refuse(BadValue, value, s.Value, "is not an email address")
		}
		t.EmailAddresses = append(t.EmailAddresses, s.Value)
	case "URI":
		u, err := url.Parse(s.Value)
		if err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "") {
			return refuse(BadValue, value, s.Value, "is not an absolute URI")
		}
		t.URIs = append(t.URIs, u)
	default:
		return refuse(BadSANType, field+".type", s.Type, "must be DNS, IP, EMAIL or URI")
	}
	return nil
}

// validDNSName accepts host names, with one leading wildcard label.
func validDNSName(s string) bool {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "*."), ".")
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
	for _, r := range l {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
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
