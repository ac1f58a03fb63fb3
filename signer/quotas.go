package signer

import (
	"context"
	"fmt"
	"time"
)

// QuotaDefault declares one per-tenant quota resource of a family: its name
// (the store's quota counter and the key of the `quotas` configuration
// map), the limit a tenant
// gets unless configuration (Options.Quotas) says otherwise, and whether
// configuration may change it at all (a limit that is part of a public
// contract is Fixed).
type QuotaDefault struct {
	Resource string
	Default  int64 // negative: unlimited
	Fixed    bool
}

// ReasonQuota is the reason of QuotaFree's refusal; a family re-tags it
// with its own reason (and wording) where its wire family tells quotas
// apart.
const ReasonQuota Reason = "quota"

// QuotaResources lists every registered quota resource, in registration
// order, for metrics and reports.
func (e *Core) QuotaResources() []string { return quotaResources(e.families) }

func quotaResources(fams []Family) []string {
	var out []string
	for _, f := range fams {
		for _, q := range f.Quotas {
			out = append(out, q.Resource)
		}
	}
	return out
}

// QuotaLimit is the per-tenant limit of a resource, negative when there is
// none: the configured one unless the declaration is Fixed, else the
// declared default; a resource neither configured nor declared has none.
func (e *Core) QuotaLimit(resource string) int64 {
	q, declared := e.quotaDef[resource]
	if n, set := e.quotas[resource]; set && !q.Fixed {
		return n
	}
	if declared {
		return q.Default
	}
	return -1
}

// QuotaFree is the fast pre-check of a create: it fails when the tenant's
// quota of resource is already used up, so that a burst of creates over
// the limit does not make HSM keys only to destroy them. The store's
// atomic reservation at commit stays the rule; pass it the returned limit
// (store.Quota{Resource, Limit}). The refusal is KindQuotaExceeded with
// ReasonQuota and a generic message; a store failure is returned as
// StoreErr gives it (callers for which the pre-check is best effort may
// ignore any other kind).
func (e *Core) QuotaFree(ctx context.Context, tenant, resource string) (limit int64, err error) {
	limit = e.QuotaLimit(resource)
	if limit < 0 {
		return limit, nil
	}
	used, err := e.store.QuotaUsage(ctx, tenant, resource)
	if err != nil {
		return limit, StoreErr(err, "quota")
	}
	if used >= limit {
		e.quotaFull.Store(quotaKey{tenant, resource}, e.now())
		return limit, &Error{Kind: KindQuotaExceeded, Reason: ReasonQuota,
			Msg: fmt.Sprintf("the tenant's quota of %d %s is used up", limit, resource)}
	}
	return limit, nil
}

// quotaFullMemory is how long a quota found full keeps QuotaFreeIfFull
// reading the use before each operation.
const quotaFullMemory = 2 * time.Second

// QuotaFreeIfFull is QuotaFree for operations whose work before the
// commit is cheap enough to spend in vain now and then (one HSM
// signature, not a new key): it reads the use, a store round trip, only
// while the tenant's quota of resource was found full within the last
// quotaFullMemory (a refusal of QuotaFree, this, or a commit reported by
// NoteQuotaFull). Otherwise it answers at once and the commit's atomic
// reservation decides alone, so the common case costs no read. While the
// quota stays full every request is still refused before its work, save
// the first one after each quotaFullMemory of quiet.
func (e *Core) QuotaFreeIfFull(ctx context.Context, tenant, resource string) (int64, error) {
	limit := e.QuotaLimit(resource)
	if limit < 0 {
		return limit, nil
	}
	k := quotaKey{tenant, resource}
	at, seen := e.quotaFull.Load(k)
	if !seen || e.now().Sub(at.(time.Time)) > quotaFullMemory {
		return limit, nil
	}
	limit, err := e.QuotaFree(ctx, tenant, resource)
	switch {
	case KindOf(err) == KindQuotaExceeded:
		e.quotaFull.Store(k, e.now())
	case err == nil:
		e.quotaFull.Delete(k)
	}
	return limit, err
}

// NoteQuotaFull records that a commit found the tenant's quota of
// resource full (store.ErrQuotaExceeded), for QuotaFreeIfFull.
func (e *Core) NoteQuotaFull(tenant, resource string) {
	e.quotaFull.Store(quotaKey{tenant, resource}, e.now())
}

type quotaKey struct{ tenant, resource string }
