package admins

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"time"

	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
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

// ParseCertificate reads an administrator's client certificate: one X.509
// certificate given as base64 DER (standard or URL alphabet, padding
// optional, whitespace ignored) or as PEM text, the first of a bundle
// (encoding.ParseCertificateText). Its serial, the administrator's
// principal, must be positive.
func ParseCertificate(s string) (*x509.Certificate, error) {
	c, err := encoding.ParseCertificateText(s)
	if err != nil {
		return nil, err
	}
	if c.SerialNumber == nil || c.SerialNumber.Sign() <= 0 {
		return nil, errors.New("the certificate serial number must be positive")
	}
	return c, nil
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
		SerialNumber:            encoding.SerialHex(c.SerialNumber),
		IssuerCommonName:        c.Issuer.CommonName,
		DER:                     c.Raw,
		IssuerDN:                c.Issuer.String(),
		SubjectDN:               c.Subject.String(),
		NotBefore:               c.NotBefore.UTC(),
		NotAfter:                c.NotAfter.UTC(),
		PublicKeyAlgorithm:      c.PublicKeyAlgorithm.String(),
		SignatureAlgorithm:      c.SignatureAlgorithm.String(),
		ExtendedKeyUsage:        []string{},
		BasicConstraints:        "Subject Type=End Entity",
		Fingerprint:             encoding.Fingerprint(c.Raw),
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
	d.KeyUsage = issuance.KeyUsageNames(c.KeyUsage)
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
