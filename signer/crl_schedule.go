package signer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hsmca/hsmca/store"
)

// CRL refresh schedules, for the families that publish CRLs. A family
// keeps one platform index record per issuer (id -> tenant); its
// CRLDueField holds, as a fixed-width epoch-millisecond value
// (CRLDueAt), when the issuer's CRL is to be re-signed, or CRLDueNever
// when there is nothing to refresh. A change marks it due at once before
// signing (MarkCRLStale), so that a signature that fails, or a process
// that dies before the CRL is stored, leaves the CRL for the next round
// of the family's refresher (its janitor: DueCRLs, StillDue, then sign,
// then CRLStored or SettleCRLDue). Several replicas may refresh one CRL
// at once: each signs stored number + 1 and only the first
// version-checked commit wins.
//
// The family declares the store index {index kind, CRLDueField}, which
// DueCRLs reads.

const (
	// CRLDueField is the index record field holding the refresh time.
	CRLDueField = "crl_due"
	// CRLDueNever: the index entry has no CRL to refresh (none published,
	// an unmanaged root, or a certificate that cannot sign CRLs).
	CRLDueNever = "-"
)

// CRLDueAt is the CRLDueField value for t.
func CRLDueAt(t time.Time) string { return fmt.Sprintf("%016d", t.UnixMilli()) }

// editDue changes the CRLDueField of an index record through f, which
// gets the current value and returns the new one (false: no change). It
// is best effort: the refresh it schedules is an optimisation of the
// periodic refresh, never the only way a CRL gets signed.
func (c *Core) editDue(ctx context.Context, kind, id string, f func(cur string, has bool) (string, bool)) {
	ctx = context.WithoutCancel(ctx)
	for attempt := 0; attempt < 8; attempt++ {
		rec, err := c.store.Get(ctx, kind, store.PlatformTenant, id)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				c.log.Warn("CRL refresh time not recorded", "id", id, "err", err)
			}
			return
		}
		cur, has := rec.Fields[CRLDueField]
		next, change := f(cur, has)
		if !change || (has && next == cur) {
			return
		}
		if rec.Fields == nil {
			rec.Fields = map[string]string{}
		}
		rec.Fields[CRLDueField] = next
		err = c.store.Update(ctx, rec, store.WriteOpts{})
		if errors.Is(err, store.ErrVersionConflict) {
			Backoff(attempt)
			continue
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			c.log.Warn("CRL refresh time not recorded", "id", id, "err", err)
		}
		return
	}
}

// MarkCRLStale makes the CRL of index entry id (of index kind) due at
// once.
func (c *Core) MarkCRLStale(ctx context.Context, kind, id string) {
	due := CRLDueAt(c.now())
	c.editDue(ctx, kind, id, func(string, bool) (string, bool) { return due, true })
}

// CRLStored schedules the next refresh, at refreshAt, of a CRL just
// committed whose content was read from listedAt on. A stale mark set
// after listedAt stays: the change behind it may be missing from this
// CRL.
func (c *Core) CRLStored(ctx context.Context, kind, id string, listedAt, refreshAt time.Time) {
	from, to := CRLDueAt(listedAt), CRLDueAt(c.now())
	c.editDue(ctx, kind, id, func(cur string, has bool) (string, bool) {
		if has && cur != CRLDueNever && cur > from && cur <= to {
			return "", false
		}
		return CRLDueAt(refreshAt), true
	})
}

// CRLOverdue reports once per CRL (family, id and nextUpdate) that a CRL
// past its nextUpdate was served: the refresher has not replaced it (HSM
// down, refresher failing). family is a bounded label value.
func (c *Core) CRLOverdue(family, id string, nextUpdate time.Time) {
	next := nextUpdate.UnixMilli()
	key := family + "/" + id
	prev, loaded := c.overdueCRLs.LoadOrStore(key, next)
	if loaded && (prev.(int64) == next || !c.overdueCRLs.CompareAndSwap(key, prev, next)) {
		return
	}
	c.metrics.CRLOverdue.WithLabelValues(family).Inc()
	c.log.Warn("CRL served past its next update: the background refresh has not replaced it",
		"family", family, "id", id, "next_update", time.UnixMilli(next).UTC())
}

// DueCRLs lists the index entries of kind whose CRL refresh fell due, in
// due order. The first call of a core for a kind also gives the entries
// written before refresh times were kept one due at once.
func (c *Core) DueCRLs(ctx context.Context, kind string) ([]store.Record, error) {
	if _, done := c.crlScheduled.Load(kind); !done {
		if err := c.scheduleUnscheduled(ctx, kind); err != nil {
			return nil, err
		}
		c.crlScheduled.Store(kind, true)
	}
	page, err := c.store.List(ctx, store.Query{Kind: kind, Tenant: store.PlatformTenant,
		SortBy: CRLDueField, Filters: []store.Filter{
			{Field: CRLDueField, Value: "0", Match: store.AtLeast},
			{Field: CRLDueField, Value: CRLDueAt(c.now().Add(time.Millisecond)), Match: store.Less}}})
	if err != nil {
		return nil, StoreErr(err, "CRL index")
	}
	return page.Records, nil
}

// scheduleUnscheduled makes every index entry of kind without a refresh
// time due at once; the refresher then sorts out which publish CRLs.
func (c *Core) scheduleUnscheduled(ctx context.Context, kind string) error {
	cursor := ""
	for {
		page, err := c.store.List(ctx, store.Query{Kind: kind, Tenant: store.PlatformTenant, Limit: 500, Cursor: cursor})
		if err != nil {
			return StoreErr(err, "CRL index")
		}
		for _, r := range page.Records {
			if _, ok := r.Fields[CRLDueField]; !ok {
				c.editDue(ctx, kind, r.ID, func(_ string, has bool) (string, bool) { return CRLDueAt(time.UnixMilli(0)), !has })
			}
		}
		if page.NextCursor == "" {
			return nil
		}
		cursor = page.NextCursor
	}
}

// StillDue re-reads an index entry a round listed: another replica may
// have refreshed its CRL since.
func (c *Core) StillDue(ctx context.Context, kind, id string) (*store.Record, bool) {
	rec, err := c.store.Get(ctx, kind, store.PlatformTenant, id)
	if err != nil {
		return nil, false
	}
	due := rec.Fields[CRLDueField]
	return rec, due != "" && due != CRLDueNever && due <= CRLDueAt(c.now())
}

// SettleCRLDue sets an index entry's refresh time unless the entry
// changed since idx was read (a change marked its CRL meanwhile).
func (c *Core) SettleCRLDue(ctx context.Context, idx *store.Record, due string) {
	idx.Fields[CRLDueField] = due
	if err := c.store.Update(ctx, idx, store.WriteOpts{}); err != nil &&
		!errors.Is(err, store.ErrVersionConflict) && !errors.Is(err, store.ErrNotFound) {
		c.log.Warn("CRL refresh time not recorded", "id", idx.ID, "err", err)
	}
}
