package issuance

import (
	"crypto/x509/pkix"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DistinguishedName is a subject of the six attributes the families
// name. Its JSON form is part of stored records: keep the tags.
type DistinguishedName struct {
	CommonName         string `json:"common_name"`
	Country            string `json:"country,omitempty"`
	State              string `json:"state,omitempty"`
	Locality           string `json:"locality,omitempty"`
	Organization       string `json:"organization,omitempty"`
	OrganizationalUnit string `json:"organizational_unit,omitempty"`
}

// PKIXName is the subject in X.509 form.
func (d DistinguishedName) PKIXName() pkix.Name {
	n := pkix.Name{CommonName: d.CommonName}
	add := func(dst *[]string, v string) {
		if v != "" {
			*dst = []string{v}
		}
	}
	add(&n.Country, d.Country)
	add(&n.Province, d.State)
	add(&n.Locality, d.Locality)
	add(&n.Organization, d.Organization)
	add(&n.OrganizationalUnit, d.OrganizationalUnit)
	return n
}

// NameOf is the first value of each attribute of an X.509 name.
func NameOf(n pkix.Name) DistinguishedName {
	return DistinguishedName{CommonName: n.CommonName, Country: first(n.Country),
		State: first(n.Province), Locality: first(n.Locality),
		Organization: first(n.Organization), OrganizationalUnit: first(n.OrganizationalUnit)}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// dnRules are the attributes in the order they are checked, with their
// upper bounds (RFC 5280 appendix A) in characters.
var dnRules = []struct {
	name string
	max  int
	get  func(DistinguishedName) string
}{
	{"common_name", 64, func(d DistinguishedName) string { return d.CommonName }},
	{"country", 2, func(d DistinguishedName) string { return d.Country }},
	{"state", 128, func(d DistinguishedName) string { return d.State }},
	{"locality", 128, func(d DistinguishedName) string { return d.Locality }},
	{"organization", 64, func(d DistinguishedName) string { return d.Organization }},
	{"organizational_unit", 64, func(d DistinguishedName) string { return d.OrganizationalUnit }},
}

// Check validates a subject given under field (the fields are then
// field.common_name and so on). A CA's names all six attributes
// (all), a certificate's needs only its common name.
func (d DistinguishedName) Check(field string, all bool) error {
	for i, r := range dnRules {
		v := r.get(d)
		if v == "" {
			if all || i == 0 {
				return refuse(BadName, field+"."+r.name, v, "is required")
			}
			continue
		}
		f := field + "." + r.name
		switch {
		case strings.TrimSpace(v) != v:
			return refuse(BadName, f, v, "must not start or end with spaces")
		case UnsafeText(v):
			return refuse(BadName, f, nil, UnsafeTextMsg)
		case utf8.RuneCountInString(v) > r.max:
			return refuse(BadName, f, v, fmt.Sprintf("must be at most %d characters", r.max))
		case r.name == "country" && (len(v) != 2 || !isUpperAlpha(v)):
			return refuse(BadName, f, v, "must be an ISO 3166 alpha-2 code in capitals")
		}
	}
	return nil
}

func isUpperAlpha(s string) bool {
	for _, r := range s {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// HasControl reports a control character anywhere in s: such text in a
// certificate or a log line misleads whoever reads it.
func HasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }

// PrintableString reports whether s uses only the characters of ASN.1
// PrintableString.
func PrintableString(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune(" '()+,-./:=?", r):
		default:
			return false
		}
	}
	return true
}

// IsCountryCode reports an officially assigned ISO 3166-1 alpha-2 code.
func IsCountryCode(s string) bool { return iso3166Alpha2[s] }

var iso3166Alpha2 = func() map[string]bool {
	const codes = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ " +
		"BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ " +
		"CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ " +
		"DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR " +
		"GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY " +
		"HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP " +
		"KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY " +
		"MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ " +
		"NA NC NE NF NG NI NL NO NP NR NU NZ OM " +
		"PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW " +
		"SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ " +
		"TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ " +
		"UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"
	m := map[string]bool{}
	for _, c := range strings.Fields(codes) {
		m[c] = true
	}
	return m
}()
