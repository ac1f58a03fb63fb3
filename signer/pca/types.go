package pca

import (
	"crypto/x509"
	"fmt"
	"math"
	"net"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer/issuance"
)

// DistinguishedName is the subject of a CA or certificate as the family
// spells it (and stores it).
type DistinguishedName = issuance.DistinguishedName

// SAN is one subject alternative name as the family sends it.
type SAN = issuance.SAN

// CA types and generation modes.
const (
	CATypeRoot        = "ROOT"
	CATypeSubordinate = "SUBORDINATE"

	GenModeGenerate = "GENERATE" // key and certificate made here
	GenModeImport   = "IMPORT"   // key made here, certificate signed outside
)

// Certificate types of issuance from a CSR.
const (
	CertTypeEntity       = "ENTITY_CERT"
	CertTypeIntermediate = "INTERMEDIATE_CA"
)

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

// caKeyAlgorithms are the key algorithms a CA (and a leaf key made here)
// may have.
var caKeyAlgorithms = []hsm.Algorithm{hsm.RSA2048, hsm.RSA3072, hsm.RSA4096, hsm.EC256, hsm.EC384}

func parseKeyAlgorithm(field, s string) (hsm.Algorithm, error) {
	return parseAlgorithmOf(caKeyAlgorithms, field, s)
}

// parseAlgorithmOf accepts one of the algorithms of list.
func parseAlgorithmOf(list []hsm.Algorithm, field, s string) (hsm.Algorithm, error) {
	for _, a := range list {
		if string(a) == s {
			return a, nil
		}
	}
	if len(list) == 0 {
		return "", refused(ReasonBadKeyAlg, field, s, "the HSM token offers none of RSA2048, RSA3072, RSA4096, EC256 and EC384")
	}
	return "", refused(ReasonBadKeyAlg, field, s, "must be "+orList(list))
}

// orList is "A, B or C".
func orList(list []hsm.Algorithm) string {
	out := ""
	for i, a := range list {
		switch {
		case i == 0:
		case i == len(list)-1:
			out += " or "
		default:
			out += ", "
		}
		out += string(a)
	}
	return out
}

// checkPathLengthRange validates a requested path length alone; the
// issuer's bound is issuance.CheckPathLength's.
func checkPathLengthRange(n int) error {
	if n < 0 || n > issuance.MaxPathLength {
		return refused(ReasonBadParameter, "path_length", n, fmt.Sprintf("must be from 0 to %d", issuance.MaxPathLength))
	}
	return nil
}

// ExtendedKeyUsage is the family's set of extended key usages.
type ExtendedKeyUsage struct {
	ServerAuth      bool `json:"server_auth"`
	ClientAuth      bool `json:"client_auth"`
	CodeSigning     bool `json:"code_signing"`
	EmailProtection bool `json:"email_protection"`
	TimeStamping    bool `json:"time_stamping"`
}

// ekuDefault is what a certificate without extended_key_usage gets.
var ekuDefault = ExtendedKeyUsage{ServerAuth: true, ClientAuth: true}

func (u ExtendedKeyUsage) list() []x509.ExtKeyUsage {
	var out []x509.ExtKeyUsage
	for _, p := range []struct {
		on  bool
		eku x509.ExtKeyUsage
	}{
		{u.ServerAuth, x509.ExtKeyUsageServerAuth}, {u.ClientAuth, x509.ExtKeyUsageClientAuth},
		{u.CodeSigning, x509.ExtKeyUsageCodeSigning}, {u.EmailProtection, x509.ExtKeyUsageEmailProtection},
		{u.TimeStamping, x509.ExtKeyUsageTimeStamping},
	} {
		if p.on {
			out = append(out, p.eku)
		}
	}
	return out
}

// CRLConfiguration says whether a CA publishes a CRL and for how long each
// one is valid, with the CRL's file name and the OBS bucket the public
// service would publish it to. hsmca serves the CRL itself (its
// crl_dis_point); both names are kept and echoed as given.
type CRLConfiguration struct {
	Enabled   bool `json:"enabled"`
	ValidDays int  `json:"valid_days"`
	// CRLName is the CRL's file name; empty: the CA's id, as the
	// public service defaults it.
	CRLName string `json:"crl_name,omitempty"`
	// OBSBucketName is the OBS bucket the public service publishes to;
	// empty when none was given.
	OBSBucketName string `json:"obs_bucket_name,omitempty"`
}

const (
	minCRLDays, maxCRLDays = 7, 30
	defaultCRLDays         = 7
	minPendingDays         = 7
	maxPendingDays         = 30
	maxCRLNameLen          = 64
)

func checkCRLConfig(in *CRLConfiguration) (CRLConfiguration, error) {
	out := CRLConfiguration{ValidDays: defaultCRLDays}
	if in == nil {
		return out, nil
	}
	out.Enabled = in.Enabled
	if in.ValidDays != 0 || in.Enabled {
		if in.ValidDays < minCRLDays || in.ValidDays > maxCRLDays {
			return out, refused(ReasonBadParameter, "crl_configuration.valid_days", in.ValidDays,
				fmt.Sprintf("must be from %d to %d", minCRLDays, maxCRLDays))
		}
		out.ValidDays = in.ValidDays
	}
	if err := checkCRLNames("crl_configuration.", in.CRLName, in.OBSBucketName); err != nil {
		return out, err
	}
	out.CRLName, out.OBSBucketName = in.CRLName, in.OBSBucketName
	return out, nil
}

// checkCRLNames checks a CRL's file name and OBS bucket name (either may
// be empty: not given); prefix is the fields' path in the body.
func checkCRLNames(prefix, crlName, bucket string) error {
	if crlName != "" && !validCRLName(crlName) {
		return refused(ReasonBadParameter, prefix+"crl_name", crlName, fmt.Sprintf(
			"must be 1 to %d letters, digits, hyphens, underscores or periods, not starting with a period", maxCRLNameLen))
	}
	if bucket != "" && !validOBSBucket(bucket) {
		return refused(ReasonBadParameter, prefix+"obs_bucket_name", bucket,
			"must be an OBS bucket name: 3 to 63 lowercase letters, digits, hyphens and periods, starting with a letter or digit "+
				"and ending with one, no \"..\", \".-\" or \"-.\", and not an IP address")
	}
	return nil
}

// validCRLName reports a CRL file name hsmca accepts: the public service
// documents none, and the name becomes a file name there, so it is held
// to letters (of any script), digits, '-', '_' and '.' (not leading).
func validCRLName(s string) bool {
	if s == "" || utf8.RuneCountInString(s) > maxCRLNameLen || s[0] == '.' || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '_' && r != '.' {
			return false
		}
	}
	return true
}

// validOBSBucket applies Huawei OBS's bucket naming rules.
func validOBSBucket(s string) bool {
	if len(s) < 3 || len(s) > 63 || net.ParseIP(s) != nil {
		return false
	}
	alnum := func(b byte) bool { return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !alnum(b) && b != '-' && b != '.' {
			return false
		}
	}
	return !strings.Contains(s, "..") && !strings.Contains(s, ".-") && !strings.Contains(s, "-.")
}
