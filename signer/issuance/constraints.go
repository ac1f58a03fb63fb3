package issuance

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Name constraints at issuance (RFC 5280 4.2.1.10). A CA, or a CA above it
// in its chain, may limit the names below it (an imported CA permitted
// example.com only); hsmca refuses to sign a certificate whose names lie
// outside, instead of leaving the refusal to whichever relying party
// checks. The names checked are the subject alternative names, the common
// name when it is a host name or an IP address, the subject's
// email_address values (rfc822Name constraints) and the subject itself
// (directoryName constraints). Other name forms (otherName, x400Address,
// ediPartyName, registeredID) never appear in what hsmca signs, so their
// constraints cannot be violated.
//
// Where RFC 5280 and common verifiers read a constraint differently (Go and
// others let the email and URI constraint "example.com" cover subdomains
// too, the RFC only the host itself), a permitted constraint is read the
// narrow way and an excluded one the wide way, so that what hsmca signs
// passes both.

var oidNameConstraints = asn1.ObjectIdentifier{2, 5, 29, 30}

// IssuedName is one name of a certificate about to be signed, with the
// request field it comes from (NamesOf).
type IssuedName struct {
	field string
	dns   string
	ip    net.IP
	email string
	uri   *url.URL
}

func (n IssuedName) String() string {
	switch {
	case n.dns != "":
		return n.dns
	case n.ip != nil:
		return n.ip.String()
	case n.email != "":
		return n.email
	case n.uri != nil:
		return n.uri.String()
	}
	return ""
}

// NamesOf lists the names of a certificate to check against constraints:
// sans (already checked by AddSANs, whose field is sanField), the common
// name when it names a host, and the subject's email addresses.
func NamesOf(sanField string, sans []SAN, dnField, cn string, emails []string) []IssuedName {
	var out []IssuedName
	for i, s := range sans {
		n := IssuedName{field: fmt.Sprintf("%s[%d].value", sanField, i)}
		switch s.Type {
		case "DNS":
			n.dns = s.Value
		case "IP":
			n.ip = net.ParseIP(s.Value)
		case "EMAIL":
			n.email = s.Value
		case "URI":
			n.uri, _ = url.Parse(s.Value)
		}
		out = append(out, n)
	}
	if dns, ip := hostOf(cn); dns != "" || ip != nil {
		out = append(out, IssuedName{field: dnField + ".common_name", dns: dns, ip: ip})
	}
	for _, e := range emails {
		out = append(out, IssuedName{field: dnField + ".email_address", email: e})
	}
	return out
}

// CheckNameConstraints refuses names of a certificate to be signed under
// chain (its issuer's certificate first, then those above it) that a
// certificate of chain does not permit, or excludes. subject is the
// subject to be signed and dnField its field in refusals.
func CheckNameConstraints(chain []*x509.Certificate, names []IssuedName, subject pkix.RDNSequence, dnField string) error {
	for _, ca := range chain {
		if !hasNameConstraints(ca) {
			continue
		}
		refusal := func(field, name, why string) error {
			return refuse(BadNameConstraint, field, nil,
				fmt.Sprintf("%q is outside the name constraints of CA %q: %s", name, ca.Subject.CommonName, why))
		}
		for _, n := range names {
			if why := violation(ca, n); why != "" {
				return refusal(n.field, n.String(), why)
			}
		}
		permitted, excluded, err := dirNameConstraints(ca)
		if err != nil {
			return refuse(BadNameConstraint, dnField, nil,
				fmt.Sprintf("the name constraints of CA %q cannot be read", ca.Subject.CommonName))
		}
		subj := flatten(subject)
		if len(subj) == 0 {
			continue // directoryName constraints bind a non-empty subject only
		}
		if len(permitted) > 0 && !anyDir(subj, permitted) {
			return refusal(dnField, subject.String(), "not within a permitted directory name")
		}
		if anyDir(subj, excluded) {
			return refusal(dnField, subject.String(), "within an excluded directory name")
		}
	}
	return nil
}

func hasNameConstraints(c *x509.Certificate) bool {
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oidNameConstraints) {
			return true
		}
	}
	return false
}

// violation says why n breaks ca's constraints of its form, or "".
func violation(ca *x509.Certificate, n IssuedName) string {
	switch {
	case n.dns != "":
		if len(ca.PermittedDNSDomains) > 0 && !anyOf(ca.PermittedDNSDomains, func(c string) bool { return dnsWithin(n.dns, c) }) {
			return "not within the permitted DNS names " + strings.Join(ca.PermittedDNSDomains, ", ")
		}
		for _, c := range ca.ExcludedDNSDomains {
			if dnsMeets(n.dns, c) {
				return "within the excluded DNS name " + c
			}
		}
	case n.ip != nil:
		if len(ca.PermittedIPRanges) > 0 && !anyOf(ca.PermittedIPRanges, func(c *net.IPNet) bool { return ipWithin(n.ip, c) }) {
			return "not within the permitted IP ranges " + ipNets(ca.PermittedIPRanges)
		}
		for _, c := range ca.ExcludedIPRanges {
			if ipWithin(n.ip, c) {
				return "within the excluded IP range " + c.String()
			}
		}
	case n.email != "":
		if len(ca.PermittedEmailAddresses) > 0 && !anyOf(ca.PermittedEmailAddresses, func(c string) bool { return emailWithin(n.email, c, false) }) {
			return "not within the permitted email addresses " + strings.Join(ca.PermittedEmailAddresses, ", ")
		}
		for _, c := range ca.ExcludedEmailAddresses {
			if emailWithin(n.email, c, true) {
				return "within the excluded email addresses " + c
			}
		}
	case n.uri != nil:
		if len(ca.PermittedURIDomains) == 0 && len(ca.ExcludedURIDomains) == 0 {
			return ""
		}
		host := strings.ToLower(n.uri.Hostname())
		if host == "" || net.ParseIP(host) != nil {
			return "the URI has no host name to check against the CA's URI constraints"
		}
		if len(ca.PermittedURIDomains) > 0 && !anyOf(ca.PermittedURIDomains, func(c string) bool { return hostWithin(host, c, false) }) {
			return "not within the permitted URI hosts " + strings.Join(ca.PermittedURIDomains, ", ")
		}
		for _, c := range ca.ExcludedURIDomains {
			if hostWithin(host, c, true) {
				return "within the excluded URI hosts " + c
			}
		}
	}
	return ""
}

func anyOf[T any](list []T, f func(T) bool) bool {
	for _, v := range list {
		if f(v) {
			return true
		}
	}
	return false
}

func ipNets(list []*net.IPNet) string {
	s := make([]string, len(list))
	for i, n := range list {
		s[i] = n.String()
	}
	return strings.Join(s, ", ")
}

// dnsWithin reports whether every name that name stands for lies within
// the DNS constraint c: c itself and the names below it, or with a
// leading dot only the names below it. A wildcard's "*" is one more
// label, so *.example.com lies within example.com and .example.com.
func dnsWithin(name, c string) bool {
	name, c = strings.ToLower(name), strings.ToLower(c)
	switch {
	case c == "":
		return true
	case strings.HasPrefix(c, "."):
		return strings.HasSuffix(name, c)
	}
	return name == c || strings.HasSuffix(name, "."+c)
}

// dnsMeets reports whether some name that name stands for lies within c:
// dnsWithin, or a wildcard covering c itself (*.example.com covers the
// excluded bad.example.com).
func dnsMeets(name, c string) bool {
	if dnsWithin(name, c) {
		return true
	}
	rest, ok := strings.CutPrefix(strings.ToLower(name), "*.")
	if !ok || strings.HasPrefix(c, ".") {
		return false
	}
	label, parent, found := strings.Cut(strings.ToLower(c), ".")
	return found && label != "" && parent == rest
}

// ipWithin compares like with like: an IPv4 address (also written as
// IPv4-mapped IPv6, as certificates carry it in 4 octets) with an IPv4
// range, IPv6 with IPv6.
func ipWithin(ip net.IP, c *net.IPNet) bool {
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	if len(ip) != len(c.IP) || len(c.Mask) != len(c.IP) {
		return false
	}
	for i := range ip {
		if ip[i]&c.Mask[i] != c.IP[i]&c.Mask[i] {
			return false
		}
	}
	return true
}

// emailWithin matches a mailbox against an rfc822Name constraint: a whole
// mailbox (local part exact, domain in any case), ".example.com" (any
// domain below it), or "example.com": that host only when wide is false
// (RFC 5280), that host and the domains below it when wide is true.
func emailWithin(addr, c string, wide bool) bool {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	local, domain := addr[:at], strings.ToLower(addr[at+1:])
	if ci := strings.LastIndexByte(c, '@'); ci >= 0 {
		return local == c[:ci] && domain == strings.ToLower(c[ci+1:])
	}
	return hostWithin(domain, c, wide)
}

// hostWithin matches a host against a host-or-domain constraint of the
// email and URI forms (see emailWithin).
func hostWithin(host, c string, wide bool) bool {
	c = strings.ToLower(c)
	switch {
	case c == "":
		return true
	case strings.HasPrefix(c, "."):
		return strings.HasSuffix(host, c)
	case wide:
		return host == c || strings.HasSuffix(host, "."+c)
	}
	return host == c
}

// generalSubtree is RFC 5280's GeneralSubtree; minimum and maximum are
// read and ignored (profiles fix them at 0 and absent).
type generalSubtree struct {
	Base asn1.RawValue
	Min  int `asn1:"optional,tag:0"`
	Max  int `asn1:"optional,tag:1"`
}

// dirNameConstraints reads the directoryName subtrees of c's name
// constraints, which Go's parser leaves aside.
func dirNameConstraints(c *x509.Certificate) (permitted, excluded [][]pkix.AttributeTypeAndValue, err error) {
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidNameConstraints) {
			continue
		}
		var nc struct {
			Permitted []generalSubtree `asn1:"optional,tag:0"`
			Excluded  []generalSubtree `asn1:"optional,tag:1"`
		}
		if rest, err := asn1.Unmarshal(ext.Value, &nc); err != nil || len(rest) > 0 {
			return nil, nil, fmt.Errorf("name constraints: %v", err)
		}
		dirs := func(list []generalSubtree) ([][]pkix.AttributeTypeAndValue, error) {
			var out [][]pkix.AttributeTypeAndValue
			for _, st := range list {
				if st.Base.Class != asn1.ClassContextSpecific || st.Base.Tag != 4 {
					continue
				}
				var name pkix.RDNSequence
				if rest, err := asn1.Unmarshal(st.Base.Bytes, &name); err != nil || len(rest) > 0 {
					return nil, fmt.Errorf("directoryName constraint: %v", err)
				}
				out = append(out, flatten(name))
			}
			return out, nil
		}
		if permitted, err = dirs(nc.Permitted); err != nil {
			return nil, nil, err
		}
		if excluded, err = dirs(nc.Excluded); err != nil {
			return nil, nil, err
		}
	}
	return permitted, excluded, nil
}

func flatten(seq pkix.RDNSequence) []pkix.AttributeTypeAndValue {
	var out []pkix.AttributeTypeAndValue
	for _, rdn := range seq {
		out = append(out, rdn...)
	}
	return out
}

func anyDir(subj []pkix.AttributeTypeAndValue, list [][]pkix.AttributeTypeAndValue) bool {
	for _, d := range list {
		if dirWithin(subj, d) {
			return true
		}
	}
	return false
}

// dirWithin reports whether the subject lies in the subtree of the
// directory name c: c's attributes begin the subject's, compared without
// regard to case or runs of spaces.
func dirWithin(subj, c []pkix.AttributeTypeAndValue) bool {
	if len(c) > len(subj) {
		return false
	}
	for i, a := range c {
		if !a.Type.Equal(subj[i].Type) {
			return false
		}
		av, ok1 := a.Value.(string)
		sv, ok2 := subj[i].Value.(string)
		if !ok1 || !ok2 || foldSpaces(av) != foldSpaces(sv) {
			return false
		}
	}
	return true
}

func foldSpaces(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

// SubjectOf is the subject a template will carry, as an RDN sequence.
func SubjectOf(t *x509.Certificate) pkix.RDNSequence {
	if t.RawSubject != nil {
		var seq pkix.RDNSequence
		if _, err := asn1.Unmarshal(t.RawSubject, &seq); err == nil {
			return seq
		}
		return nil
	}
	return t.Subject.ToRDNSequence()
}
