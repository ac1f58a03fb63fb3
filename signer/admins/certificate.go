package admins

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"time"
)

// Certificate describes an administrator's client certificate, parsed
// from the DER the store keeps.
type Certificate struct {
	UUID               string
	CommonName         string
	SerialNumber       string // lowercase hex, no leading zeros
	IssuerCommonName   string
	DER                []byte
	IssuerDN           string
	SubjectDN          string
	NotBefore          time.Time
	NotAfter           time.Time
	PublicKeyAlgorithm string // Go's names: RSA, ECDSA, Ed25519
	SignatureAlgorithm string // Go's names, e.g. SHA256-RSA, ECDSA-SHA256
	KeySize            int
	ExtendedKeyUsage   []string // dotted OIDs, in certificate order
	KeyUsage           []string // RFC 5280 names: digitalSignature, ...
	BasicConstraints   string   // "Subject Type=CA" or "Subject Type=End Entity"
	Status             string   // valid, expiring, expired, invalid (not yet valid)
	Fingerprint        string   // lowercase hex SHA-256 of the DER
	// SubjectAlternativeNames has one list per general-name type, every
	// type present even when empty.
	SubjectAlternativeNames map[string][]string
}

// expiringWithin is when a valid certificate starts to report "expiring".
const expiringWithin = 30 * 24 * time.Hour

// certSerial is a certificate's serial as an admin principal: lowercase
// hex without leading zeros.
func certSerial(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return ""
	}
	return c.SerialNumber.Text(16)
}

// certFingerprint is the lowercase hex SHA-256 of a certificate's DER.
func certFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

var errNoCertificate = errors.New("no certificate found: want base64 DER or PEM")

// ParseCertificate reads one X.509 certificate given as base64 DER
// (standard or URL alphabet, padding optional, whitespace ignored) or as
// PEM text. Only the first certificate of a PEM bundle is used.
func ParseCertificate(s string) (*x509.Certificate, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errNoCertificate
	}
	var der []byte
	const begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
	if strings.Contains(s, "-----BEGIN") {
		rest := []byte(s)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == "CERTIFICATE" {
				der = b.Bytes
				break
			}
		}
		if der == nil {
			// Some proxies fold PEM into one header line, newlines turned
			// into spaces, which pem.Decode does not accept.
			i := strings.Index(s, begin)
			if i < 0 {
				return nil, errNoCertificate
			}
			s = s[i+len(begin):]
			j := strings.Index(s, end)
			if j < 0 {
				return nil, errNoCertificate
			}
			s = s[:j]
		}
	}
	if der == nil {
		compact := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
				return -1
			}
			return r
		}, s)
		var err error
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if der, err = enc.DecodeString(compact); err == nil {
				break
			}
		}
		if err != nil {
			return nil, errors.New("not valid base64")
		}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errors.New("not an X.509 certificate: " + err.Error())
	}
	if c.SerialNumber == nil || c.SerialNumber.Sign() <= 0 {
		return nil, errors.New("the certificate serial number must be positive")
	}
	return c, nil
}

var keyUsageNames = []struct {
	bit  x509.KeyUsage
	name string
}{
	{x509.KeyUsageDigitalSignature, "digitalSignature"},
	{x509.KeyUsageContentCommitment, "nonRepudiation"},
	{x509.KeyUsageKeyEncipherment, "keyEncipherment"},
	{x509.KeyUsageDataEncipherment, "dataEncipherment"},
	{x509.KeyUsageKeyAgreement, "keyAgreement"},
	{x509.KeyUsageCertSign, "keyCertSign"},
	{x509.KeyUsageCRLSign, "cRLSign"},
	{x509.KeyUsageEncipherOnly, "encipherOnly"},
	{x509.KeyUsageDecipherOnly, "decipherOnly"},
}

// sanTypes are the GeneralName choices of RFC 5280, by their ASN.1 names.
var sanTypes = []string{"otherName", "rfc822Name", "dNSName", "x400Address",
	"directoryName", "ediPartyName", "uniformResourceIdentifier", "iPAddress", "registeredID"}

var oidExtKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}

// describeCertificate fills the descriptive fields of a certificate as of now.
func describeCertificate(c *x509.Certificate, certUUID string, now time.Time) Certificate {
	d := Certificate{
		UUID:                    certUUID,
		CommonName:              c.Subject.CommonName,
		SerialNumber:            certSerial(c),
		IssuerCommonName:        c.Issuer.CommonName,
		DER:                     c.Raw,
		IssuerDN:                c.Issuer.String(),
		SubjectDN:               c.Subject.String(),
		NotBefore:               c.NotBefore.UTC(),
		NotAfter:                c.NotAfter.UTC(),
		PublicKeyAlgorithm:      c.PublicKeyAlgorithm.String(),
		SignatureAlgorithm:      c.SignatureAlgorithm.String(),
		ExtendedKeyUsage:        []string{},
		KeyUsage:                []string{},
		BasicConstraints:        "Subject Type=End Entity",
		Fingerprint:             certFingerprint(c.Raw),
		SubjectAlternativeNames: map[string][]string{},
	}
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		d.KeySize = k.N.BitLen()
	case *ecdsa.PublicKey:
		d.KeySize = k.Curve.Params().BitSize
	case ed25519.PublicKey:
		d.KeySize = 256
	}
	// The extension itself keeps every OID in order, known to Go or not.
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oidExtKeyUsage) {
			var oids []asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(ext.Value, &oids); err == nil {
				for _, o := range oids {
					d.ExtendedKeyUsage = append(d.ExtendedKeyUsage, o.String())
				}
			}
		}
	}
	for _, ku := range keyUsageNames {
		if c.KeyUsage&ku.bit != 0 {
			d.KeyUsage = append(d.KeyUsage, ku.name)
		}
	}
	if c.BasicConstraintsValid && c.IsCA {
		d.BasicConstraints = "Subject Type=CA"
	}
	switch {
	case now.Before(c.NotBefore):
		d.Status = "invalid"
	case now.After(c.NotAfter):
		d.Status = "expired"
	case c.NotAfter.Sub(now) < expiringWithin:
		d.Status = "expiring"
	default:
		d.Status = "valid"
	}
	for _, t := range sanTypes {
		d.SubjectAlternativeNames[t] = []string{}
	}
	d.SubjectAlternativeNames["dNSName"] = append(d.SubjectAlternativeNames["dNSName"], c.DNSNames...)
	d.SubjectAlternativeNames["rfc822Name"] = append(d.SubjectAlternativeNames["rfc822Name"], c.EmailAddresses...)
	for _, ip := range c.IPAddresses {
		d.SubjectAlternativeNames["iPAddress"] = append(d.SubjectAlternativeNames["iPAddress"], ip.String())
	}
	for _, u := range c.URIs {
		d.SubjectAlternativeNames["uniformResourceIdentifier"] = append(d.SubjectAlternativeNames["uniformResourceIdentifier"], u.String())
	}
	return d
}
