package pca

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/hsmca/hsmca/signer/encoding"
)

// Issuance for other front-ends of the family's CAs (the ACME family):
// their signatures use only standard types, so that a front-end declares
// the interface it needs without importing this package. The certificates
// are the family's own, listed, revocable, on their issuer's CRL and OCSP
// like any other.

// IssuingCA returns the certificate of a CA of the tenant whose status
// lets it issue now.
func (s *Service) IssuingCA(ctx context.Context, tenant, caID string) (*x509.Certificate, error) {
	is, err := s.loadIssuer(ctx, tenant, caID)
	if err != nil {
		return nil, err
	}
	return is.cert, nil
}

// IssueEntityFromCSR issues an end-entity certificate (server and client
// authentication) for the key, subject and subject alternative names of a
// CSR the front-end checked, valid from now for validity (whole hours,
// rounded up), under the family's rules (PCA_CERTIFICATE_ISSUE_CSR). It
// returns the certificate's id, its DER and its chain as PEM (the issuer
// and the CAs above it).
func (s *Service) IssueEntityFromCSR(ctx context.Context, tenant, caID string, csrDER []byte, validity time.Duration) (string, []byte, string, error) {
	hours := int64((validity + time.Hour - 1) / time.Hour)
	id, err := s.IssueFromCSR(ctx, tenant, CertFromCSR{IssuerID: caID, CSR: encoding.EncodePEM("CERTIFICATE REQUEST", csrDER),
		Validity: &Validity{Type: "HOUR", Value: hours}})
	if err != nil {
		return id, nil, "", err
	}
	_, c, err := s.getCert(ctx, tenant, id)
	if err != nil {
		return id, nil, "", err
	}
	_, ic, err := s.getCA(ctx, tenant, c.IssuerID)
	if err != nil {
		return id, nil, "", err
	}
	above, err := s.chainAbove(ctx, tenant, ic)
	if err != nil {
		return id, nil, "", err
	}
	return id, c.Cert, encoding.EncodePEM("CERTIFICATE", ic.Cert) + above, nil
}

// CertificateStatus returns a certificate's status (ISSUED, REVOKED,
// EXPIRED) and, when revoked, its reason.
func (s *Service) CertificateStatus(ctx context.Context, tenant, id string) (string, string, error) {
	_, c, err := getRecord[certSummary](ctx, s, RecordCertificate, "certificate", tenant, id)
	if err != nil {
		return "", "", err
	}
	return c.effective(s.now()), c.RevokeReason, nil
}
