package signer

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/hsmca/hsmca/metrics"
)

// Certificate building for the DTS family (ISO/IEC 18013-5 IACA-style
// roots and VICAL signer certificates). Kept apart from the PCA family's
// x509 code: the two profiles differ and evolve separately.

var oidIssuerAltName = asn1.ObjectIdentifier{2, 5, 29, 18}

// dtsSerial is the serial of a DTS certificate: 159 random bits, positive
// and at most 20 octets once DER-encoded, like every serial hsmca issues.
func dtsSerial() (*big.Int, error) { return randomSerial() }

// dtsKeyID is the key identifier of RFC 7093 method 1: the leftmost 160
// bits of the SHA-256 of the subjectPublicKey bits.
func dtsKeyID(pub crypto.PublicKey) ([]byte, error) {
	bits, err := subjectPublicKeyBits(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(bits)
	return sum[:20], nil
}

// issuerAltNameExtension encodes the configured issuer alternative name as
// GeneralNames with one entry: rfc822Name [1] for an email address,
// uniformResourceIdentifier [6] for an absolute URI. Empty gives no
// extension.
func issuerAltNameExtension(v string) (*pkix.Extension, error) {
	if v == "" {
		return nil, nil
	}
	tag, err := issuerAltNameTag(v)
	if err != nil {
		return nil, err
	}
	gn := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, Bytes: []byte(v)}
	der, err := asn1.Marshal([]asn1.RawValue{gn})
	if err != nil {
		return nil, err
	}
	return &pkix.Extension{Id: oidIssuerAltName, Value: der}, nil
}

// ValidIssuerAltName says whether v can be the configured
// IssuerAlternativeName of DTS root certificates (an absolute URI or an
// email address, ASCII only as IA5String requires); empty is valid and
// means no extension.
func ValidIssuerAltName(v string) error {
	if v == "" {
		return nil
	}
	_, err := issuerAltNameTag(v)
	return err
}

func issuerAltNameTag(v string) (int, error) {
	for _, r := range v {
		if r < 0x21 || r > 0x7e {
			return 0, errors.New("issuer_alt_name must be printable ASCII without spaces")
		}
	}
	if strings.Contains(v, "://") || strings.HasPrefix(v, "urn:") {
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "") {
			return 0, fmt.Errorf("issuer_alt_name %q is not an absolute URI", v)
		}
		return 6, nil
	}
	if a, err := mail.ParseAddress(v); err == nil && a.Address == v && a.Name == "" {
		return 1, nil
	}
	return 0, fmt.Errorf("issuer_alt_name %q is neither an absolute URI nor an email address", v)
}

// timedSigner observes the latency of every signature the HSM makes for
// certificates, CRLs and payloads.
type timedSigner struct {
	crypto.Signer
	m         *metrics.Metrics
	operation string
	algorithm string
}

func (t timedSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := t.Signer.Sign(r, digest, opts)
	if err == nil {
		t.m.ObserveSigning(t.operation, t.algorithm, time.Since(start))
	}
	return sig, err
}

func (e *Engine) timed(s crypto.Signer, operation, algorithm string) crypto.Signer {
	return timedSigner{Signer: s, m: e.metrics, operation: operation, algorithm: algorithm}
}

// dtsRootTemplate is the IACA-style root profile of API.md.
func dtsRootTemplate(pub crypto.PublicKey, subj pkix.Name, notBefore, notAfter time.Time, ian *pkix.Extension) (*x509.Certificate, error) {
	serial, err := dtsSerial()
	if err != nil {
		return nil, err
	}
	ski, err := dtsKeyID(pub)
	if err != nil {
		return nil, err
	}
	t := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subj,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		SubjectKeyId:          ski,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if ian != nil {
		t.ExtraExtensions = append(t.ExtraExtensions, *ian)
	}
	return t, nil
}

// dtsSignerTemplate is the VICAL signer profile: an end-entity certificate
// for digital signatures only, carrying the root's issuer alternative name
// as ISO/IEC 18013-5 asks of certificates under an IACA.
func dtsSignerTemplate(csr *x509.CertificateRequest, root *x509.Certificate, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	serial, err := dtsSerial()
	if err != nil {
		return nil, err
	}
	ski, err := dtsKeyID(csr.PublicKey)
	if err != nil {
		return nil, err
	}
	t := &x509.Certificate{
		SerialNumber: serial,
		Subject:      csr.Subject,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		SubjectKeyId: ski,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	for _, ext := range root.Extensions {
		if ext.Id.Equal(oidIssuerAltName) {
			t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: ext.Id, Value: ext.Value})
		}
	}
	return t, nil
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func pemEncode(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// parseOneCertificatePEM reads exactly one CERTIFICATE block (surrounding
// whitespace allowed, nothing else).
func parseOneCertificatePEM(s string) (*x509.Certificate, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(s)))
	if block == nil {
		return nil, errors.New("must be a PEM-encoded certificate")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PEM block is %q, want CERTIFICATE", block.Type)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, errors.New("must hold exactly one certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, errors.New("not a valid X.509 certificate")
	}
	return c, nil
}

func firstOf(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// printableString reports whether s uses only the characters of ASN.1
// PrintableString.
func printableString(s string) bool {
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

// iso3166Alpha2 are the officially assigned ISO 3166-1 alpha-2 codes.
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
