package pca

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/signer/ocsp"
	"github.com/hsmca/hsmca/store"
)

// What relying parties find from a certificate alone: every certificate
// a CA of the family signs (subordinates and leaves) names, under the
// daemon's public base URL, the CA's CRL and the CA's certificate, both
// served by public routes without a credential (the api package's
// GET .../{ca_id}/crl and GET .../{ca_id}/certificate). Roots name none.

// PublicCAPath is the path of the CCM CA routes; a CA's CRL is served at
// PublicCAPath/{id}/crl and its certificate at PublicCAPath/{id}/certificate.
const PublicCAPath = "/v1/private-certificate-authorities"

// issuerURLs are the URLs written into the certificates is signs: none
// without a public base URL; the CRL distribution point only while the
// CA publishes a CRL (a disabled CRL route answers no CRL, and a
// certificate should not promise one), the CA certificate always.
func (s *Service) issuerURLs(is *issuer) issuance.IssuerURLs {
	base := s.core.PublicURL(PublicCAPath + "/" + is.rec.ID)
	if base == "" {
		return issuance.IssuerURLs{}
	}
	u := issuance.IssuerURLs{CAIssuers: base + "/certificate", OCSP: s.ocspURL(is)}
	if is.ca.CRL.Enabled {
		u.CRL = base + "/crl"
	}
	return u
}

// ocspURL is the OCSP responder named in the certificates is signs: the
// daemon's while the CA's OCSP is on (UpdateOcspSwitch, ocsp.go), none
// otherwise.
func (s *Service) ocspURL(is *issuer) string {
	if !is.ca.OCSP {
		return ""
	}
	return s.core.PublicURL(ocsp.Path)
}

// PublicCACertificate serves a CA's certificate (DER) to anyone: it is
// the id-ad-caIssuers URL of the certificates the CA signs. It only
// reads. A PENDING CA has no certificate yet and a DELETED one is no
// longer served, alike not found.
func (s *Service) PublicCACertificate(ctx context.Context, caID string) ([]byte, error) {
	_, c, err := s.publicCA(ctx, caID)
	if err != nil {
		return nil, err
	}
	if len(c.Cert) == 0 {
		return nil, notFound("CA", caID)
	}
	return c.Cert, nil
}

// publicCA reads a CA named by id alone, for the public routes: through
// the platform index to its tenant. The record returned may be shared:
// read it, never change it. A malformed or unknown id, and a CA
// PENDING or DELETED, are not found.
func (s *Service) publicCA(ctx context.Context, caID string) (string, *caRecord, error) {
	if _, err := uuid.Parse(caID); err != nil || len(caID) != 36 {
		return "", nil, notFound("CA", caID)
	}
	idx, err := s.store.Get(ctx, RecordIndex, store.PlatformTenant, caID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return "", nil, notFound("CA", caID)
		}
		return "", nil, signer.StoreErr(err, "CA")
	}
	tenant := idx.Fields["tenant"]
	// Read-only: the decoded record may be shared (see loadIssuer).
	_, c, err := getRecordVia(ctx, s, RecordCA, "CA", tenant, caID, s.issuers.Get)
	if err != nil {
		return "", nil, err
	}
	if c.Status == CAPending || c.Status == CADeleted {
		return "", nil, notFound("CA", caID)
	}
	return tenant, c, nil
}
