package pca

import (
	"context"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// RefreshDueCRLs signs every CA's CRL, in every tenant, whose refresh fell
// due (half its validity passed, or a change marked it), and returns how
// many it signed: the family's CRL janitor, run on every replica (the
// schedule is the core's, signer/crl_refresh.go). Concurrent rounds never
// give two CRLs one number.
func (s *Service) RefreshDueCRLs(ctx context.Context) (int, error) {
	return s.core.RefreshDueCRLs(ctx, "pca", RecordIndex, s.refreshDue)
}

// refreshDue re-signs the CRL of a due index entry when its CA publishes
// one.
func (s *Service) refreshDue(ctx context.Context, idx *store.Record) (bool, error) {
	tenant := idx.Fields["tenant"]
	_, c, err := s.getCA(ctx, tenant, idx.ID)
	switch {
	case signer.KindOf(err) == signer.KindNotFound:
		return false, nil // being created, or purged: its creator or purger settles it
	case err != nil:
		return false, err
	case c.Status == CADeleted:
		return false, nil // stays due: a restored CA publishes again
	case !c.CRL.Enabled || len(c.Cert) == 0:
		s.core.SettleCRLDue(ctx, idx, signer.CRLDueNever)
		return false, nil
	}
	if _, err := CATransition(CAOpSignCRL, c.effective(s.now())); err != nil {
		s.core.SettleCRLDue(ctx, idx, signer.CRLDueNever)
		return false, nil
	}
	cert, err := c.certificate()
	if err != nil {
		return false, signer.StoreErr(err, "CA certificate")
	}
	if _, err := issuance.CRLIssuer(cert); err != nil {
		// A CA imported before such certificates were refused: reported
		// once, then left alone (enabling its CRL again is refused).
		s.core.Log().Warn("CA certificate cannot sign CRLs; its CRL is not refreshed", "ca", idx.ID, "err", err)
		s.core.SettleCRLDue(ctx, idx, signer.CRLDueNever)
		return false, nil
	}
	return s.generateCRL(ctx, tenant, idx.ID, true)
}
