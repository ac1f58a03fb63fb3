package issuance

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"time"
)

// The DTS 3-tier profiles: a root that may sign one level of intermediate
// CA, and the intermediate CA that signs the VICAL signers under it.

// IACARootForIntermediatesTemplate is IACARootTemplate for a root that
// issues intermediate CAs (MATTR's useIntermediateCa): the same profile
// with a path length of 1 instead of 0, so that a chain root ->
// intermediate -> signer validates.
func IACARootForIntermediatesTemplate(subject pkix.Name, nb, na time.Time, ian *pkix.Extension) *x509.Certificate {
	t := IACARootTemplate(subject, nb, na, ian)
	t.MaxPathLen, t.MaxPathLenZero = 1, false
	return t
}

// DTSIntermediateTemplate is the DTS intermediate CA profile: a CA that
// signs only end entities (VICAL signers) and CRLs (basicConstraints CA
// with path length 0, keyUsage keyCertSign and cRLSign, both critical),
// carrying its root's issuer alternative name when the root has one, as
// ISO/IEC 18013-5 asks of every certificate under an IACA. The authority
// key identifier comes from root (SignCertificate's parent).
func DTSIntermediateTemplate(subject pkix.Name, root *x509.Certificate, nb, na time.Time) *x509.Certificate {
	t := &x509.Certificate{
		Subject: subject, NotBefore: nb, NotAfter: na,
		BasicConstraintsValid: true, IsCA: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if ian := IssuerAltNameOf(root); ian != nil {
		t.ExtraExtensions = append(t.ExtraExtensions, *ian)
	}
	return t
}

// IssuerAltNameOf returns a copy of c's IssuerAlternativeName extension,
// or nil when c has none.
func IssuerAltNameOf(c *x509.Certificate) *pkix.Extension {
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oidIssuerAltName) {
			return &pkix.Extension{Id: ext.Id, Value: append([]byte(nil), ext.Value...)}
		}
	}
	return nil
}

// AllowsIntermediate says whether CA certificate c may have one level of
// CA certificate below it: its basicConstraints path length is absent or
// at least 1 (crypto/x509 parses an absent one as -1).
func AllowsIntermediate(c *x509.Certificate) bool {
	return c.BasicConstraintsValid && c.IsCA && (c.MaxPathLen < 0 || c.MaxPathLen >= 1)
}
