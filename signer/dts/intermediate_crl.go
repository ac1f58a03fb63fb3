package dts

import (
	"context"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// CRLs of managed intermediate CAs, kept like the managed roots' (crl.go):
// signed in the HSM when the intermediate is created and when a VICAL
// signer it issued is deleted, re-signed by the family's refresher
// (refresh-intermediate-crls) once crlRefresh has passed, stored in a
// kindCRL record under the intermediate's id, and only read by the public
// route. An intermediate's own revocation is on its root's CRL.

// IntermediateCRL returns the current DER CRL of a managed intermediate,
// by root and intermediate id alone (the route is public).
func (s *Service) IntermediateCRL(ctx context.Context, rootID, id string) ([]byte, error) {
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
		return nil, signer.E(signer.KindNotFound, "an uploaded DTS intermediate CA certificate has no certificate revocation list here").With(ReasonNoCRL)
	}
	return s.storedCRL(ctx, tenant, id, "DTS intermediate CA certificate")
}

// intermediateTenant resolves an intermediate id to its tenant through
// the platform index; the index must name rootID as its root.
func (s *Service) intermediateTenant(ctx context.Context, rootID, id string) (string, error) {
	return s.indexTenant(ctx, kindIntermediateIndex, id, "DTS intermediate CA certificate", intermediateNotFound,
		func(rec *store.Record) bool { return rec.Fields["ca_id"] == rootID })
}

// signIntermediateCRL is signRootCRL for a managed intermediate.
func (s *Service) signIntermediateCRL(ctx context.Context, tenant, id string, background bool) (bool, error) {
	return s.signStoredCRL(ctx, tenant, id, background, kindIntermediateIndex, func() (*crlSigner, error) {
		rec, m, err := s.getIntermediate(ctx, tenant, "", id)
		if err != nil || !m.Managed {
			return nil, err
		}
		return &crlSigner{keyID: rec.Fields[signer.KeyField], certDER: m.CertDER, keyAlg: m.KeyAlgorithm, what: "DTS intermediate CA"}, nil
	})
}

// refreshDueIntermediateCRLs signs every managed intermediate's CRL, in
// every tenant, whose refresh fell due; the family's janitor
// refresh-intermediate-crls runs it on every replica.
func (s *Service) refreshDueIntermediateCRLs(ctx context.Context) (int, error) {
	return s.core.RefreshDueCRLs(ctx, "dts", kindIntermediateIndex, func(ctx context.Context, idx *store.Record) (bool, error) {
		_, m, err := s.getIntermediate(ctx, idx.Fields["tenant"], "", idx.ID)
		switch {
		case signer.KindOf(err) == signer.KindNotFound:
			return false, nil
		case err != nil:
			return false, err
		case !m.Managed:
			s.core.SettleCRLDue(ctx, idx, signer.CRLDueNever)
			return false, nil
		}
		return s.signIntermediateCRL(ctx, idx.Fields["tenant"], idx.ID, true)
	})
}
