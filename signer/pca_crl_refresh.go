package signer

import (
	"context"
	"errors"
	"time"

	"github.com/hsmca/hsmca/store"
)

// The PCA family's CRL refresher, and the old names of the CRL schedule
// (crl_refresh.go) that the PCA files call, while the PCA family lives in
// package signer; they go with its move.

const (
	crlDueField = CRLDueField
	crlDueNever = CRLDueNever
)

func crlDueAt(t time.Time) string { return CRLDueAt(t) }

func (e *Engine) markCRLStale(ctx context.Context, kind, id string) { e.MarkCRLStale(ctx, kind, id) }

func (e *Engine) crlStored(ctx context.Context, kind, id string, listedAt, refreshAt time.Time) {
	e.CRLStored(ctx, kind, id, listedAt, refreshAt)
}

func (e *Engine) crlOverdue(family, id string, next int64) { e.CRLOverdue(family, id, next) }

// RefreshDueCRLs signs every PCA CRL, in every tenant, whose refresh fell
// due (half its validity passed, or a change marked it), and returns how
// many it signed: the PCA family's CRL janitor. Concurrent rounds never
// give two CRLs one number.
func (e *Engine) RefreshDueCRLs(ctx context.Context) (int, error) {
	if _, err := e.HSM(); err != nil {
		return 0, err
	}
	due, err := e.DueCRLs(ctx, kindPCAIndex)
	if err != nil {
		return 0, err
	}
	signed := 0
	var errs []error
	for i := range due {
		if ctx.Err() != nil {
			return signed, ctx.Err()
		}
		ok, err := e.refreshDuePCACRL(ctx, &due[i])
		if err != nil {
			e.log.Warn("CRL refresh failed", "family", "pca", "id", due[i].ID, "err", err)
			errs = append(errs, err)
		}
		if ok {
			signed++
		}
	}
	return signed, errors.Join(errs...)
}

// refreshDuePCACRL re-signs the CRL of a due PCA index entry when its CA
// publishes one.
func (e *Engine) refreshDuePCACRL(ctx context.Context, listed *store.Record) (bool, error) {
	idx, due := e.StillDue(ctx, kindPCAIndex, listed.ID)
	if !due {
		return false, nil
	}
	tenant := idx.Fields["tenant"]
	_, c, err := e.getCA(ctx, tenant, idx.ID)
	switch {
	case KindOf(err) == KindNotFound:
		return false, nil // being created, or purged: its creator or purger settles it
	case err != nil:
		return false, err
	case c.Status == CADeleted:
		return false, nil // stays due: a restored CA publishes again
	case !c.CRL.Enabled || len(c.Cert) == 0:
		e.SettleCRLDue(ctx, idx, CRLDueNever)
		return false, nil
	}
	if _, err := CATransition(CAOpSignCRL, c.effective(e.now())); err != nil {
		e.SettleCRLDue(ctx, idx, CRLDueNever)
		return false, nil
	}
	cert, err := c.certificate()
	if err != nil {
		return false, storeErr(err, "CA certificate")
	}
	if _, err := crlIssuer(cert); err != nil {
		// A CA imported before such certificates were refused: reported
		// once, then left alone (enabling its CRL again is refused).
		e.log.Warn("CA certificate cannot sign CRLs; its CRL is not refreshed", "ca", idx.ID, "err", err)
		e.SettleCRLDue(ctx, idx, CRLDueNever)
		return false, nil
	}
	return e.generateCRL(ctx, tenant, idx.ID, true)
}
