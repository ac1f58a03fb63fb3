package dts

import (
	"context"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/signer/ocsp"
)

// What relying parties find from a certificate alone: every VICAL signer
// certificate a managed root signs names, under the daemon's public base
// URL, the root's CRL and the root's certificate, both served by public
// routes without a credential (the api package's
// GET .../ca/{id}/revocation-list and GET .../ca/{id}/certificate).
// Roots name none.

// PublicRootPath is the path of the ecosystem root routes; a root's CRL
// is served at PublicRootPath/{id}/revocation-list and its certificate at
// PublicRootPath/{id}/certificate.
const PublicRootPath = "/v1/ecosystems/certificates/ca"

// rootURLs are the URLs written into the certificates the managed root
// signs: none without a public base URL. Every managed root publishes a
// CRL from its creation on.
func (s *Service) rootURLs(root *dtsRoot) issuance.IssuerURLs {
	base := s.core.PublicURL(PublicRootPath + "/" + root.ID)
	if base == "" {
		return issuance.IssuerURLs{}
	}
	return issuance.IssuerURLs{CRL: base + "/revocation-list", CAIssuers: base + "/certificate", OCSP: s.ocspURL(root)}
}

// issuerURLs are the URLs written into a VICAL signer's certificate: its
// root's, or, under an intermediate, the intermediate's CRL and
// certificate (GET .../ca/{id}/intermediate/{intermediateId}/revocation-list
// and .../certificate).
func (s *Service) issuerURLs(iss *signerIssuer) issuance.IssuerURLs {
	if iss.inter == nil {
		return s.rootURLs(iss.root)
	}
	base := s.core.PublicURL(PublicRootPath + "/" + iss.root.ID + "/intermediate/" + iss.inter.ID)
	if base == "" {
		return issuance.IssuerURLs{}
	}
	return issuance.IssuerURLs{CRL: base + "/revocation-list", CAIssuers: base + "/certificate"}
}

// IntermediateCertificate serves a managed intermediate's certificate
// (DER) by root and intermediate id alone (the route is public): the
// id-ad-caIssuers URL of the signers it issues.
func (s *Service) IntermediateCertificate(ctx context.Context, rootID, id string) ([]byte, error) {
	if checkIntermediatePath(rootID, id) != nil {
		return nil, intermediateNotFound(id)
	}
	tenant, err := s.intermediateTenant(ctx, rootID, id)
	if err != nil {
		return nil, err
	}
	_, m, err := s.getIntermediate(ctx, tenant, rootID, id)
	if err != nil {
		return nil, err
	}
	if !m.Managed {
		return nil, intermediateNotFound(id)
	}
	return m.CertDER, nil
}

// ocspURL is the OCSP responder named in the certificates the root signs
// (signers, intermediates): the daemon's while the root's OCSP is on
// (ocsp.go), none otherwise.
func (s *Service) ocspURL(root *dtsRoot) string {
	if !root.OCSP {
		return ""
	}
	return s.core.PublicURL(ocsp.Path)
}

// RootCertificate serves a managed root's certificate (DER) by root id
// alone (the route is public): it is the id-ad-caIssuers URL of the
// certificates the root signs. It only reads. A root uploaded without its
// key signs nothing here and is not served.
func (s *Service) RootCertificate(ctx context.Context, id string) ([]byte, error) {
	if checkID("id", id, "path") != nil {
		return nil, signer.E(signer.KindNotFound, "DTS root CA certificate %s not found", id)
	}
	tenant, err := s.rootTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	_, root, err := s.getRoot(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if !root.Managed {
		return nil, signer.E(signer.KindNotFound, "DTS root CA certificate %s is not managed here", id)
	}
	return root.CertDER, nil
}
