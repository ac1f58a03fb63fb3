package pca

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hsmca/hsmca/hsm"
)

// DistinguishedName is the subject of a CA or certificate as the CCM
// PCA family spells it.
type DistinguishedName struct {
	CommonName         string `json:"common_name"`
	Country            string `json:"country,omitempty"`
	State              string `json:"state,omitempty"`
	Locality           string `json:"locality,omitempty"`
	Organization       string `json:"organization,omitempty"`
	OrganizationalUnit string `json:"organizational_unit,omitempty"`
}

// pkixName is the subject in X.509 form.
func (d DistinguishedName) pkixName() pkix.Name {
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

func dnFromPKIX(n pkix.Name) DistinguishedName {
	first := func(v []string) string {
		if len(v) == 0 {
			return ""
		}
		return v[0]
	}
	return DistinguishedName{CommonName: n.CommonName, Country: first(n.Country),
		State: first(n.Province), Locality: first(n.Locality),
		Organization: first(n.Organization), OrganizationalUnit: first(n.OrganizationalUnit)}
}

// check validates a DN; a CA needs all six attributes, a certificate only
// its common name.
func (d DistinguishedName) check(all bool) error {
	fields := []struct {
		name, v string
		max     int
	}{
		{"common_name", d.CommonName, 64},
		{"country", d.Country, 2},
		{"state", d.State, 128},
		{"locality", d.Locality, 128},
		{"organization", d.Organization, 64},
		{"organizational_unit", d.OrganizationalUnit, 64},
	}
	for i, f := range fields {
		field := "distinguished_name." + f.name
		switch {
		case f.v == "":
			if all || i == 0 {
				return refused(ReasonBadDN, field, f.v, "is required")
			}
			continue
		case strings.TrimSpace(f.v) != f.v:
			return refused(ReasonBadDN, field, f.v, "must not start or end with spaces")
		case issuance.UnsafeText(f.v):
			return refused(ReasonBadDN, field, nil, issuance.UnsafeTextMsg)
		case utf8.RuneCountInString(f.v) > f.max:
			return refused(ReasonBadDN, field, f.v, fmt.Sprintf("must be at most %d characters", f.max))
		}
		if f.name == "country" && !(len(f.v) == 2 && isUpperAlpha(f.v)) {
			return refused(ReasonBadDN, field, f.v, "must be an ISO 3166 alpha-2 code in capitals")
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

// Validity is a validity period as the family expresses it.
type Validity struct {
	Type      string `json:"type"`
	Value     int64  `json:"value"`
	StartFrom int64  `json:"start_from,omitempty"` // epoch ms; 0 means now
}

// The family's calendar: a month is 31 days and a year 12 such months, so
// that durations never depend on the date they start from.
const (
	pcaHour  = time.Hour
	pcaDay   = 24 * pcaHour
	pcaMonth = 31 * pcaDay
	pcaYear  = 12 * pcaMonth

	maxRootValidity  = 30 * pcaYear
	maxChildValidity = 20 * pcaYear
	// startFromSlack tolerates clock skew between client and daemon.
	startFromSlack = 5 * time.Minute
)

// window turns a validity into [notBefore, notAfter], truncated to whole
// seconds as X.509 stores them. max bounds the length.
func (v *Validity) window(now time.Time, max time.Duration) (time.Time, time.Time, error) {
	if v == nil {
		return time.Time{}, time.Time{}, refused(ReasonBadValidity, "validity", nil, "is required")
	}
	var unit time.Duration
	switch v.Type {
	case "YEAR":
		unit = pcaYear
	case "MONTH":
		unit = pcaMonth
	case "DAY":
		unit = pcaDay
	case "HOUR":
		unit = pcaHour
	default:
		return time.Time{}, time.Time{}, refused(ReasonBadValidity, "validity.type", v.Type, "must be YEAR, MONTH, DAY or HOUR")
	}
	if v.Value < 1 || v.Value > math.MaxInt64/int64(unit) || time.Duration(v.Value)*unit > max {
		return time.Time{}, time.Time{}, refused(ReasonBadValidity, "validity.value", v.Value,
			fmt.Sprintf("must be at least 1 and the period at most %d years", max/pcaYear))
	}
	start := now
	if v.StartFrom != 0 {
		start = time.UnixMilli(v.StartFrom)
		if start.Before(now.Add(-startFromSlack)) {
			return time.Time{}, time.Time{}, refused(ReasonBadValidity, "validity.start_from", v.StartFrom,
				"must not be earlier than five minutes ago")
		}
		if start.After(now.Add(maxChildValidity)) {
			return time.Time{}, time.Time{}, refused(ReasonBadValidity, "validity.start_from", v.StartFrom,
				"is too far in the future")
		}
	}
	nb := start.UTC().Truncate(time.Second)
	return nb, nb.Add(time.Duration(v.Value) * unit), nil
}

// withinIssuer refuses a child period that the issuer's certificate does
// not cover: a child never outlives its issuer, and is never cut short
// silently.
func withinIssuer(nb, na time.Time, issuer *x509.Certificate) error {
	if na.After(issuer.NotAfter) {
		return refused(ReasonBadValidity, "validity", na.UTC().Format(time.RFC3339),
			"the certificate would end after its issuer ("+issuer.NotAfter.UTC().Format(time.RFC3339)+")")
	}
	if nb.Before(issuer.NotBefore) {
		return refused(ReasonBadValidity, "validity.start_from", nb.UnixMilli(),
			"the certificate would start before its issuer ("+issuer.NotBefore.UTC().Format(time.RFC3339)+")")
	}
	return nil
}

// caKeyAlgorithms are the key algorithms a CA may have.
var caKeyAlgorithms = []hsm.Algorithm{hsm.RSA2048, hsm.RSA3072, hsm.RSA4096, hsm.EC256, hsm.EC384}

func parseKeyAlgorithm(field, s string) (hsm.Algorithm, error) {
	for _, a := range caKeyAlgorithms {
		if string(a) == s {
			return a, nil
		}
	}
	return "", refused(ReasonBadKeyAlg, field, s, "must be RSA2048, RSA3072, RSA4096, EC256 or EC384")
}

// checkSigAlg validates a signature hash name; empty gives SHA256 when
// optional.
func checkSigAlg(field, s string, required bool) (string, error) {
	switch s {
	case "SHA256", "SHA384", "SHA512":
		return s, nil
	case "":
		if !required {
			return "SHA256", nil
		}
		return "", refused(ReasonBadSigAlg, field, s, "is required")
	}
	return "", refused(ReasonBadSigAlg, field, s, "must be SHA256, SHA384 or SHA512")
}

// x509SigAlg combines the issuer key's type with the requested hash.
func x509SigAlg(keyAlg, hash string) x509.SignatureAlgorithm {
	ec := strings.HasPrefix(keyAlg, "EC")
	switch {
	case ec && hash == "SHA384":
		return x509.ECDSAWithSHA384
	case ec && hash == "SHA512":
		return x509.ECDSAWithSHA512
	case ec:
		return x509.ECDSAWithSHA256
	case hash == "SHA384":
		return x509.SHA384WithRSA
	case hash == "SHA512":
		return x509.SHA512WithRSA
	}
	return x509.SHA256WithRSA
}

// Key usages by the names the family uses.
var pcaKeyUsages = []struct {
	name string
	ku   x509.KeyUsage
}{
	{"digitalSignature", x509.KeyUsageDigitalSignature},
	{"nonRepudiation", x509.KeyUsageContentCommitment},
	{"keyEncipherment", x509.KeyUsageKeyEncipherment},
	{"dataEncipherment", x509.KeyUsageDataEncipherment},
	{"keyAgreement", x509.KeyUsageKeyAgreement},
	{"keyCertSign", x509.KeyUsageCertSign},
	{"cRLSign", x509.KeyUsageCRLSign},
	{"encipherOnly", x509.KeyUsageEncipherOnly},
	{"decipherOnly", x509.KeyUsageDecipherOnly},
}

func parseKeyUsages(names []string) (x509.KeyUsage, error) {
	var ku x509.KeyUsage
next:
	for _, n := range names {
		for _, k := range pcaKeyUsages {
			if strings.EqualFold(n, k.name) {
				ku |= k.ku
				continue next
			}
		}
		return 0, refused(ReasonBadParameter, "key_usages", n, "unknown key usage")
	}
	return ku, nil
}

func keyUsageList(ku x509.KeyUsage) []string {
	out := []string{}
	for _, k := range pcaKeyUsages {
		if ku&k.ku != 0 {
			out = append(out, k.name)
		}
	}
	return out
}

// checkPathLength validates a requested path length against its issuer's:
// the issuer must allow one more CA level below it, and the child must
// allow fewer than the issuer.
func checkPathLength(field string, child int, issuer int) error {
	if child < 0 || child > 6 {
		return refused(ReasonBadParameter, field, child, "must be from 0 to 6")
	}
	if issuer <= 0 {
		return &signer.Error{Kind: signer.KindInvalid, Reason: ReasonPathLength,
			Msg:    "the issuer has path length 0 and may issue only end-entity certificates",
			Fields: []signer.FieldError{{Field: field, Value: child, Msg: "issuer allows no subordinate CA", Location: "body"}}}
	}
	if child >= issuer {
		return &signer.Error{Kind: signer.KindInvalid, Reason: ReasonPathLength,
			Msg:    fmt.Sprintf("%s must be below the issuer's path length %d", field, issuer),
			Fields: []signer.FieldError{{Field: field, Value: child, Msg: "too long for the issuer", Location: "body"}}}
	}
	return nil
}

// unlimitedPathLength is the stored path length of a root (no limit).
const unlimitedPathLength = 7
