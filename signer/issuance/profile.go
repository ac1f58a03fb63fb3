package issuance

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"time"
)

// The profiles of the certificates hsmca issues. A template leaves the
// serial number and key identifiers to SignCertificate.

// CATemplate is the profile of every PCA CA certificate: basicConstraints
// CA with the path length (UnlimitedPathLength: none), keyCertSign and
// cRLSign always, plus the requested usages.
func CATemplate(subject pkix.Name, nb, na time.Time, pathLen int, ku x509.KeyUsage) *x509.Certificate {
	t := &x509.Certificate{
		Subject: subject, NotBefore: nb, NotAfter: na,
		BasicConstraintsValid: true, IsCA: true,
		KeyUsage: ku | x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if pathLen >= UnlimitedPathLength {
		t.MaxPathLen = -1
	} else {
		t.MaxPathLen = pathLen
		t.MaxPathLenZero = pathLen == 0
	}
	return t
}

// EntityTemplate is the profile of a PCA end-entity certificate; the
// caller adds the subject and the SANs.
func EntityTemplate(nb, na time.Time, ku x509.KeyUsage, eku []x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{BasicConstraintsValid: true, KeyUsage: ku, ExtKeyUsage: eku,
		NotBefore: nb, NotAfter: na}
}

// IACARootTemplate is the DTS root profile (ISO/IEC 18013-5 IACA style):
// a CA that signs only end entities and CRLs, with the configured issuer
// alternative name when there is one.
func IACARootTemplate(subject pkix.Name, nb, na time.Time, ian *pkix.Extension) *x509.Certificate {
	t := &x509.Certificate{
		Subject: subject, NotBefore: nb, NotAfter: na,
		BasicConstraintsValid: true, IsCA: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if ian != nil {
		t.ExtraExtensions = append(t.ExtraExtensions, *ian)
	}
	return t
}

// VICALSignerTemplate is the VICAL signer profile: an end-entity
// certificate for digital signatures only, with the VICAL signer's
// extended key usage (critical, ISO/IEC 18013-5 Annex C), carrying the
// root's issuer alternative name as ISO/IEC 18013-5 asks of certificates
// under an IACA.
func VICALSignerTemplate(subject pkix.Name, root *x509.Certificate, nb, na time.Time) *x509.Certificate {
	t := &x509.Certificate{Subject: subject, NotBefore: nb, NotAfter: na,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtraExtensions: []pkix.Extension{vicalSignerEKU}}
	for _, ext := range root.Extensions {
		if ext.Id.Equal(oidIssuerAltName) {
			t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: ext.Id, Value: ext.Value})
		}
	}
	return t
}

// OIDVICALSigner is id-mdl-kp-mdlVICAL (ISO/IEC 18013-5 Annex C), the
// extended key usage of a VICAL signer certificate.
var OIDVICALSigner = asn1.ObjectIdentifier{1, 0, 18013, 5, 1, 8}

// vicalSignerEKU is the extendedKeyUsage extension of a VICAL signer
// certificate: critical, that purpose alone. Go marshals the field form
// non-critical, hence the extension by hand.
var vicalSignerEKU = func() pkix.Extension {
	der, err := asn1.Marshal([]asn1.ObjectIdentifier{OIDVICALSigner})
	if err != nil {
		panic(err) // a constant
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: der}
}()
