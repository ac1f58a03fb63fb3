package signer

import (
	"context"
	"errors"
	"time"

	"github.com/hsmca/hsmca/store"
)

// CRL refresh. A CRL is signed only by the authenticated operations that
// change it (enabling it, a revocation, a CA's activation or import with
// CRLs on, a DTS root's creation, a DTS signer's deletion) and by the
// background refresher below, which each replica runs from its janitor
// loop. The public CRL routes only read what is stored.
//
// The refresher finds its work through the platform index records that
// map a CA or DTS root id to its tenant: their crl_due field holds, as a
// fixed-width epoch-millisecond value, when the CRL is to be re-signed
// (half its validity for a PCA CRL, dtsCRLRefresh for a DTS root), or
// crlDueNever when there is nothing to refresh. A change marks it due at
// once before signing, so that a signature that fails, or a process that
// dies before the CRL is stored, leaves the CRL for the next round.
// Several replicas may refresh the same CRL at once: each signs
// stored number + 1 and only the first version-checked commit wins, the
// other signatures are discarded.

const (
	crlDueField = "crl_due"
	// crlDueNever: the index entry has no CRL to refresh (none published,
	// an unmanaged root, or a certificate that cannot sign CRLs).
	crlDueNever = "-"
)

// crlDueAt is the crl_due value for t.
func crlDueAt(t time.Time) string { return msField(t.UnixMilli()) }

// editCRLDue changes the crl_due field of an index record through f, which
// gets the current value and returns the new one (false: no change). It
// is best effort: the refresh it schedules is an optimisation of the
// half-validity refresh, never the only way a CRL gets signed.
func (e *Engine) editCRLDue(ctx context.Context, kind, id string, f func(cur string, has bool) (string, bool)) {
	ctx = context.WithoutCancel(ctx)
	for attempt := 0; attempt < 8; attempt++ {
		rec, err := e.store.Get(ctx, kind, store.PlatformTenant, id)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				e.log.Warn("CRL refresh time not recorded", "id", id, "err", err)
			}
			return
		}
		cur, has := rec.Fields[crlDueField]
		next, change := f(cur, has)
		if !change || (has && next == cur) {
			return
		}
		if rec.Fields == nil {
			rec.Fields = map[string]string{}
		}
		rec.Fields[crlDueField] = next
		err = e.store.Update(ctx, rec, store.WriteOpts{})
		if errors.Is(err, store.ErrVersionConflict) {
			backoff(attempt)
			continue
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			e.log.Warn("CRL refresh time not recorded", "id", id, "err", err)
		}
		return
	}
}

// markCRLStale makes the CRL of an index entry due at once.
func (e *Engine) markCRLStale(ctx context.Context, kind, id string) {
	due := crlDueAt(e.now())
	e.editCRLDue(ctx, kind, id, func(string, bool) (string, bool) { return due, true })
}

// crlStored schedules the next refresh of a CRL just committed, whose
// content was read from listedAt on. A stale mark set after listedAt
// stays: the change behind it may be missing from this CRL.
func (e *Engine) crlStored(ctx context.Context, kind, id string, listedAt, refreshAt time.Time) {
	from, to := crlDueAt(listedAt), crlDueAt(e.now())
	e.editCRLDue(ctx, kind, id, func(cur string, has bool) (string, bool) {
		if has && cur != crlDueNever && cur > from && cur <= to {
			return "", false
		}
		return crlDueAt(refreshAt), true
	})
}

// crlOverdue reports once per CRL (kind, id and nextUpdate) that a CRL
// past its nextUpdate was served: the refresher has not replaced it
// (HSM down, refresher failing). The read itself changes nothing.
func (e *Engine) crlOverdue(family, id string, next int64) {
	key := family + "/" + id
	prev, loaded := e.overdueCRLs.LoadOrStore(key, next)
	if loaded && (prev.(int64) == next || !e.overdueCRLs.CompareAndSwap(key, prev, next)) {
		return
	}
	e.metrics.CRLOverdue.WithLabelValues(family).Inc()
	e.log.Warn("CRL served past its next update: the background refresh has not replaced it",
		"family", family, "id", id, "next_update", time.UnixMilli(next).UTC())
}

// crlFamily is one kind of index whose entries publish CRLs.
type crlFamily struct {
	name    string
	kind    string // the platform index kind
	refresh func(e *Engine, ctx context.Context, idx *store.Record) (bool, error)
}

var crlFamilies = []crlFamily{
	{"pca", kindPCAIndex, (*Engine).refreshDuePCACRL},
}

// RefreshDueCRLs signs every CRL, in every tenant, whose refresh fell due
// (half its validity passed, or a change marked it), and returns how many
// it signed. The daemon runs it from its janitor loop on every replica;
// concurrent rounds never give two CRLs one number. The first round of a
// process also schedules index entries written before refresh times were
// kept (they are refreshed at once).
func (e *Engine) RefreshDueCRLs(ctx context.Context) (int, error) {
	if _, err := e.HSM(); err != nil {
		return 0, err
	}
	if !e.crlBackfilled.Load() {
		if err := e.backfillCRLDue(ctx); err != nil {
			return 0, err
		}
		e.crlBackfilled.Store(true)
	}
	signed := 0
	var errs []error
	for _, f := range crlFamilies {
		page, err := e.store.List(ctx, store.Query{Kind: f.kind, Tenant: store.PlatformTenant,
			SortBy: crlDueField, Filters: []store.Filter{
				{Field: crlDueField, Value: "0", Match: store.AtLeast},
				{Field: crlDueField, Value: crlDueAt(e.now().Add(time.Millisecond)), Match: store.Less}}})
		if err != nil {
			errs = append(errs, storeErr(err, "CRL index"))
			continue
		}
		for i := range page.Records {
			if ctx.Err() != nil {
				return signed, ctx.Err()
			}
			ok, err := f.refresh(e, ctx, &page.Records[i])
			if err != nil {
				e.log.Warn("CRL refresh failed", "family", f.name, "id", page.Records[i].ID, "err", err)
				errs = append(errs, err)
			}
			if ok {
				signed++
			}
		}
	}
	return signed, errors.Join(errs...)
}

// backfillCRLDue gives every index entry without a refresh time one due
// at once; the refresher then sorts out which publish CRLs.
func (e *Engine) backfillCRLDue(ctx context.Context) error {
	for _, f := range crlFamilies {
		cursor := ""
		for {
			page, err := e.store.List(ctx, store.Query{Kind: f.kind, Tenant: store.PlatformTenant, Limit: 500, Cursor: cursor})
			if err != nil {
				return storeErr(err, "CRL index")
			}
			for _, r := range page.Records {
				if _, ok := r.Fields[crlDueField]; !ok {
					e.editCRLDue(ctx, f.kind, r.ID, func(_ string, has bool) (string, bool) { return crlDueAt(time.UnixMilli(0)), !has })
				}
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
	}
	return nil
}

// stillDue re-reads an index entry the round listed: another replica may
// have refreshed its CRL since.
func (e *Engine) stillDue(ctx context.Context, kind, id string) (*store.Record, bool) {
	rec, err := e.store.Get(ctx, kind, store.PlatformTenant, id)
	if err != nil {
		return nil, false
	}
	due := rec.Fields[crlDueField]
	return rec, due != "" && due != crlDueNever && due <= crlDueAt(e.now())
}

// settleCRLDue sets an index entry's crl_due unless the entry changed
// since idx was read (a change marked its CRL meanwhile).
func (e *Engine) settleCRLDue(ctx context.Context, idx *store.Record, due string) {
	idx.Fields[crlDueField] = due
	if err := e.store.Update(ctx, idx, store.WriteOpts{}); err != nil &&
		!errors.Is(err, store.ErrVersionConflict) && !errors.Is(err, store.ErrNotFound) {
		e.log.Warn("CRL refresh time not recorded", "id", idx.ID, "err", err)
	}
}

// refreshDuePCACRL re-signs the CRL of a due PCA index entry when its CA
// publishes one.
func (e *Engine) refreshDuePCACRL(ctx context.Context, listed *store.Record) (bool, error) {
	idx, due := e.stillDue(ctx, kindPCAIndex, listed.ID)
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
		e.settleCRLDue(ctx, idx, crlDueNever)
		return false, nil
	}
	if _, err := CATransition(CAOpSignCRL, c.effective(e.now())); err != nil {
		e.settleCRLDue(ctx, idx, crlDueNever)
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
		e.settleCRLDue(ctx, idx, crlDueNever)
		return false, nil
	}
	return e.generateCRL(ctx, tenant, idx.ID, true)
}
