package signer

import (
	"context"
	"errors"

	"github.com/hsmca/hsmca/store"
)

// RefreshDueCRLs signs every DTS root CRL, in every tenant, whose refresh
// fell due, and returns how many it signed: the DTS family's CRL janitor
// (crl_refresh.go). Concurrent rounds never give two CRLs one number.
func (e *Engine) RefreshDueCRLs(ctx context.Context) (int, error) {
	if _, err := e.HSM(); err != nil {
		return 0, err
	}
	due, err := e.DueCRLs(ctx, kindDTSRootIndex)
	if err != nil {
		return 0, err
	}
	signed := 0
	var errs []error
	for i := range due {
		if ctx.Err() != nil {
			return signed, ctx.Err()
		}
		ok, err := e.refreshDueDTSCRL(ctx, &due[i])
		if err != nil {
			e.log.Warn("CRL refresh failed", "family", "dts", "id", due[i].ID, "err", err)
			errs = append(errs, err)
		}
		if ok {
			signed++
		}
	}
	return signed, errors.Join(errs...)
}

// refreshDueDTSCRL re-signs the CRL of a due DTS root index entry.
func (e *Engine) refreshDueDTSCRL(ctx context.Context, listed *store.Record) (bool, error) {
	idx, due := e.StillDue(ctx, kindDTSRootIndex, listed.ID)
	if !due {
		return false, nil
	}
	_, root, err := e.getDTSRoot(ctx, idx.Fields["tenant"], idx.ID)
	switch {
	case KindOf(err) == KindNotFound:
		return false, nil
	case err != nil:
		return false, err
	case !root.Managed:
		e.SettleCRLDue(ctx, idx, CRLDueNever)
		return false, nil
	}
	return e.signDTSRootCRL(ctx, idx.Fields["tenant"], idx.ID, true)
}
