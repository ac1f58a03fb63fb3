package issuance

import "crypto/x509"

// IssuerURLs are where a relying party finds, over plain HTTP and without
// a credential, what it needs to check a certificate an issuer signed:
// the issuer's CRL, the issuer's own certificate (to complete the chain
// from the certificate alone) and the issuer's OCSP responder. The
// families fill them from the daemon's public base URL; the zero value
// (no base URL) names nothing.
type IssuerURLs struct {
	// CRL is the URL of the issuer's CRL (DER): the certificate's
	// cRLDistributionPoints, one distribution point with this fullName.
	CRL string
	// CAIssuers is the URL of the issuer's certificate (DER,
	// application/pkix-cert): authorityInfoAccess id-ad-caIssuers.
	CAIssuers string
	// OCSP is the URL of the issuer's OCSP responder:
	// authorityInfoAccess id-ad-ocsp. Empty while OCSP is off for the
	// issuer.
	OCSP string
}

// AddIssuerURLs is the one place that writes an issuer's URLs into a
// certificate: tmpl is the template of a certificate another certificate
// signs (a subordinate CA, an intermediate, an end entity), never a root,
// which has no issuer to point at. Each empty URL adds nothing, so the
// zero IssuerURLs leaves tmpl as it was.
func AddIssuerURLs(tmpl *x509.Certificate, u IssuerURLs) {
	if u.CRL != "" {
		tmpl.CRLDistributionPoints = []string{u.CRL}
	}
	if u.CAIssuers != "" {
		tmpl.IssuingCertificateURL = []string{u.CAIssuers}
	}
	if u.OCSP != "" {
		tmpl.OCSPServer = []string{u.OCSP}
	}
}
