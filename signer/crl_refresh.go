package signer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hsmca/hsmca/store"
)

// CRL refresh. A CRL is signed only by the authenticated operations that
// change it (enabling it, a revocation, a CA's activation or import with
// CRLs on, a DTS root's creation, a DTS signer's deletion) and by the
// background refreshers, which each replica runs as janitors of the
// families that publish CRLs. The public CRL routes only read what is
// stored.
//
// A refresher finds its work through the platform index records that map
// a CA or DTS root id to its tenant: their crl_due field (CRLDueField)
// holds, as a fixed-width epoch-millisecond value, when the CRL is to be
// re-signed (half its validity for a PCA CRL, dtsCRLRefresh for a DTS
// root), or CRLDueNever when there is nothing to refresh. A change marks
// it due at once before signing, so that a signature that fails, or a
// process that dies before the CRL is stored, leaves the CRL for the next
// round. Several replicas may refresh the same CRL at once: each signs
// stored number + 1 and only the first version-checked commit wins, the
// other signatures are discarded. The core keeps the schedule; each
// family signs its own CRLs.

const (
	// CRLDueField is the index field holding when a CRL falls due.
	CRLDueField = "crl_due"
	// CRLDueNever: the index entry has no CRL to refresh (none published,
	// an unmanaged root, or a certificate that cannot sign CRLs).
	CRLDueNever = "-"
)

// CRLDueAt is the crl_due value for t.
func CRLDueAt(t time.Time) string { return fmt.Sprintf("%016d", t.UnixMilli()) }

// EditCRLDue changes the crl_due field of an index record through f, which
// gets the current value and returns the new one (false: no change). It
// is best effort: the refresh it schedules is an optimisation of the
// half-validity refresh, never the only way a CRL gets signed.
func (e *Core) EditCRLDue(ctx context.Context, kind, id string, f func(cur string, has bool) (string, bool)) {
	ctx = context.WithoutCancel(ctx)
	for attempt := 0; attempt < 8; attempt++ {
		rec, err := e.store.Get(ctx, kind, store.PlatformTenant, id)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				e.log.Warn("CRL refresh time not recorded", "id", id, "err", err)
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
		err = e.store.Update(ctx, rec, store.WriteOpts{})
		if errors.Is(err, store.ErrVersionConflict) {
			Backoff(attempt)
			continue
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			e.log.Warn("CRL refresh time not recorded", "id", id, "err", err)
		}
		return
	}
}

// MarkCRLStale makes the CRL of an index entry due at once.
func (e *Core) MarkCRLStale(ctx context.Context, kind, id string) {
	due := CRLDueAt(e.now())
	e.EditCRLDue(ctx, kind, id, func(string, bool) (string, bool) { return due, true })
}

// CRLStored schedules the next refresh of a CRL just committed, whose
// content was read from listedAt on. A stale mark set after listedAt
// stays: the change behind it may be missing from this CRL.
func (e *Core) CRLStored(ctx context.Context, kind, id string, listedAt, refreshAt time.Time) {
	from, to := CRLDueAt(listedAt), CRLDueAt(e.now())
	e.EditCRLDue(ctx, kind, id, func(cur string, has bool) (string, bool) {
		if has && cur != CRLDueNever && cur > from && cur <= to {
			return "", false
		}
		return CRLDueAt(refreshAt), true
	})
}

// crlBuild is the state of one CRL's builds in this process: the one
// running, and the one that starts when it ends, which every caller
// arriving meanwhile joins.
type crlBuild struct {
	mu   sync.Mutex
	cur  *crlFlight
	next *crlFlight
}

type crlFlight struct {
	done    chan struct{}
	err     error
	callers int // the callers it serves, under crlBuild.mu
}

// BuildCRL runs build, which signs and stores the CRL of (family, id)
// from a fresh read of its entries, for a caller that has just written an
// entry and must not return before a CRL lists it. One build of a CRL
// runs at a time in the process, and every caller that arrives while one
// runs shares the next, which begins after they all wrote their entries:
// a burst of revocations on one CA costs two builds, not one each (a CRL
// of 100,000 entries takes about a second of one core). Builds of
// different CRLs, and every other request, run beside them: nothing is
// held but the caller. build runs without its leader's cancellation
// (others wait on it); a caller whose context ends stops waiting, its
// entry stays written and its CRL marked for the refresher.
func (e *Core) BuildCRL(ctx context.Context, family, id string, build func(ctx context.Context) error) error {
	v, _ := e.crlBuilds.LoadOrStore(family+"/"+id, &crlBuild{})
	b := v.(*crlBuild)
	b.mu.Lock()
	if f := b.next; f != nil {
		f.callers++
		b.mu.Unlock()
		return waitCRLFlight(ctx, f)
	}
	f := &crlFlight{done: make(chan struct{}), callers: 1}
	prev := b.cur
	if prev == nil {
		b.cur = f
	} else {
		b.next = f
	}
	b.mu.Unlock()
	if prev != nil {
		<-prev.done // the joiners wait on this caller: it stays
		b.mu.Lock()
		b.cur, b.next = f, nil
		b.mu.Unlock()
	}
	f.err = build(context.WithoutCancel(ctx))
	b.mu.Lock()
	if b.cur == f {
		b.cur = nil
	}
	b.mu.Unlock()
	close(f.done)
	return f.err
}

func waitCRLFlight(ctx context.Context, f *crlFlight) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CRLOverdue reports once per CRL (family, id and nextUpdate) that a CRL
// past its nextUpdate was served: the refresher has not replaced it
// (HSM down, refresher failing). The read itself changes nothing.
func (e *Core) CRLOverdue(family, id string, next int64) {
	key := family + "/" + id
	prev, loaded := e.overdueCRLs.LoadOrStore(key, next)
	if loaded && (prev.(int64) == next || !e.overdueCRLs.CompareAndSwap(key, prev, next)) {
		return
	}
	e.metrics.CRLOverdue.WithLabelValues(family).Inc()
	e.log.Warn("CRL served past its next update: the background refresh has not replaced it",
		"family", family, "id", id, "next_update", time.UnixMilli(next).UTC())
}

// DueCRLs lists the platform index entries of kind whose CRL refresh fell
// due (half its validity passed, or a change marked it), in every
// tenant. The first call of a process for a kind also schedules the
// entries written before refresh times were kept (they fall due at
// once). A refresher re-reads each entry (StillDue) before signing.
func (e *Core) DueCRLs(ctx context.Context, kind string) ([]store.Record, error) {
	if _, done := e.crlBackfilled.Load(kind); !done {
		if err := e.backfillCRLDue(ctx, kind); err != nil {
			return nil, err
		}
		e.crlBackfilled.Store(kind, true)
	}
	page, err := e.store.List(ctx, store.Query{Kind: kind, Tenant: store.PlatformTenant,
		SortBy: CRLDueField, Filters: []store.Filter{
			{Field: CRLDueField, Value: "0", Match: store.AtLeast},
			{Field: CRLDueField, Value: CRLDueAt(e.now().Add(time.Millisecond)), Match: store.Less}}})
	if err != nil {
		return nil, StoreErr(err, "CRL index")
	}
	return page.Records, nil
}

// backfillCRLDue gives every index entry of kind without a refresh time
// one due at once; the refresher then sorts out which publish CRLs.
func (e *Core) backfillCRLDue(ctx context.Context, kind string) error {
	cursor := ""
	for {
		page, err := e.store.List(ctx, store.Query{Kind: kind, Tenant: store.PlatformTenant, Limit: 500, Cursor: cursor})
		if err != nil {
			return StoreErr(err, "CRL index")
		}
		for _, r := range page.Records {
			if _, ok := r.Fields[CRLDueField]; !ok {
				e.EditCRLDue(ctx, kind, r.ID, func(_ string, has bool) (string, bool) { return CRLDueAt(time.UnixMilli(0)), !has })
			}
		}
		if page.NextCursor == "" {
			return nil
		}
		cursor = page.NextCursor
	}
}

// RefreshDueCRLs is one round of a family's CRL refresher: for every index
// entry of kind, in every tenant, whose refresh fell due and still is when
// re-read (another replica may have refreshed it since), refresh re-signs
// the CRL (or settles the entry) and says whether it signed one. It
// returns how many were signed; a failing entry is logged under family
// and the others go on.
func (e *Core) RefreshDueCRLs(ctx context.Context, family, kind string,
	refresh func(ctx context.Context, idx *store.Record) (bool, error)) (int, error) {
	if _, err := e.HSM(); err != nil {
		return 0, err
	}
	due, err := e.DueCRLs(ctx, kind)
	if err != nil {
		return 0, err
	}
	signed := 0
	var errs []error
	for i := range due {
		if ctx.Err() != nil {
			return signed, ctx.Err()
		}
		idx, still := e.StillDue(ctx, kind, due[i].ID)
		if !still {
			continue
		}
		ok, err := refresh(ctx, idx)
		if err != nil {
			e.log.Warn("CRL refresh failed", "family", family, "id", due[i].ID, "err", err)
			errs = append(errs, err)
		}
		if ok {
			signed++
		}
	}
	return signed, errors.Join(errs...)
}

// StillDue re-reads an index entry a round listed: another replica may
// have refreshed its CRL since.
func (e *Core) StillDue(ctx context.Context, kind, id string) (*store.Record, bool) {
	rec, err := e.store.Get(ctx, kind, store.PlatformTenant, id)
	if err != nil {
		return nil, false
	}
	due := rec.Fields[CRLDueField]
	return rec, due != "" && due != CRLDueNever && due <= CRLDueAt(e.now())
}

// SettleCRLDue sets an index entry's crl_due unless the entry changed
// since idx was read (a change marked its CRL meanwhile).
func (e *Core) SettleCRLDue(ctx context.Context, idx *store.Record, due string) {
	idx.Fields[CRLDueField] = due
	if err := e.store.Update(ctx, idx, store.WriteOpts{}); err != nil &&
		!errors.Is(err, store.ErrVersionConflict) && !errors.Is(err, store.ErrNotFound) {
		e.log.Warn("CRL refresh time not recorded", "id", idx.ID, "err", err)
	}
}
