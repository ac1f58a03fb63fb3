package pca

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// Deleting a CA: at once when nothing depends on it, otherwise scheduled,
// restorable until the day comes, then purged with its HSM key by the
// next access to the tenant's CAs or by the family's janitor.

// DeleteCA deletes a PENDING or REVOKED CA at once, and schedules the
// deletion of a DISABLED or EXPIRED one in pendingDays (0: the minimum).
// When the time comes the record goes and its HSM key is destroyed.
func (s *Service) DeleteCA(ctx context.Context, tenant, id string, pendingDays int) error {
	op := s.core.Start(ctx, tenant, "PCA_CA_DELETE")
	return op.Done(id, s.deleteCA(ctx, tenant, id, pendingDays))
}

func (s *Service) deleteCA(ctx context.Context, tenant, id string, pendingDays int) error {
	if pendingDays == 0 {
		pendingDays = minPendingDays
	}
	if pendingDays < minPendingDays || pendingDays > maxPendingDays {
		return refused(ReasonBadParameter, "pending_days", pendingDays,
			fmt.Sprintf("must be from %d to %d", minPendingDays, maxPendingDays))
	}
	now := s.now()
	for attempt := 0; ; attempt++ {
		rec, c, to, err := s.transit(ctx, tenant, id, CAOpDelete)
		if err != nil {
			return err
		}
		// Removal happens in two steps, both judged by the state machine:
		// mark DELETED (version-checked), then purge.
		c.Status = CADeleted
		c.DeleteTime = now.Add(time.Duration(pendingDays) * pcaDay).UnixMilli()
		if to == caGone {
			c.DeleteTime = now.UnixMilli()
		}
		retry, err := s.saveTransit(ctx, rec, c, id, attempt)
		if err != nil {
			return err
		}
		if retry {
			continue
		}
		if c.DeleteTime <= now.UnixMilli() {
			return s.purgeCA(ctx, rec)
		}
		s.markIndex(ctx, id, msField(c.DeleteTime))
		return nil
	}
}

// markIndex notes in the CA's index record when it is due for purging, so
// that SweepDeletedCAs finds it without reading every tenant.
func (s *Service) markIndex(ctx context.Context, id, purgeAt string) {
	for attempt := 0; attempt < 5; attempt++ {
		rec, err := s.store.Get(ctx, RecordIndex, store.PlatformTenant, id)
		if err != nil {
			return
		}
		if purgeAt == "" {
			delete(rec.Fields, "purge_at")
		} else {
			rec.Fields["purge_at"] = purgeAt
		}
		if err := s.store.Update(ctx, rec, store.WriteOpts{}); !errors.Is(err, store.ErrVersionConflict) {
			return
		}
	}
}

// purgeCA removes a DELETED CA whose time has come: record, index, CRL, tags and
// (crash-safely) its HSM key, and gives back its quota unit.
func (s *Service) purgeCA(ctx context.Context, rec *store.Record) error {
	var c caRecord
	if err := json.Unmarshal(rec.Data, &c); err != nil {
		return signer.StoreErr(err, "CA")
	}
	if _, err := CATransition(CAOpPurge, c.Status); err != nil || c.DeleteTime > s.now().UnixMilli() {
		return err
	}
	// The responder's records and key go first: a purge that fails here
	// is retried whole by the next sweep.
	if err := s.ocsp.Purge(ctx, rec.ID); err != nil {
		return err
	}
	lim := s.core.QuotaLimit(QuotaCAs)
	if err := s.core.DeleteWithKey(ctx, rec, store.WriteOpts{Quota: &store.Quota{Resource: QuotaCAs, Limit: lim}}); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// A concurrent sweep purged it first: the deletion happened.
			return nil
		}
		return err
	}
	bg := context.WithoutCancel(ctx)
	_ = s.store.Delete(bg, RecordCRL, rec.Tenant, rec.ID, store.WriteOpts{})
	_ = s.store.Delete(bg, RecordCRLData, rec.Tenant, rec.ID, store.WriteOpts{})
	_ = s.store.Delete(bg, RecordIndex, store.PlatformTenant, rec.ID, store.WriteOpts{})
	s.forgetTags(bg, RecordCATags, rec.Tenant, rec.ID)
	return nil
}

// sweepTenant purges the tenant's CAs whose scheduled deletion is due. It
// runs on access to the tenant's CAs, so a due CA is never seen again;
// SweepDeletedCAs does the same for tenants nobody looks at.
func (s *Service) sweepTenant(ctx context.Context, tenant string) {
	page, err := s.store.List(ctx, store.Query{Kind: RecordCA, Tenant: tenant,
		Filters: []store.Filter{{Field: "status", Value: CADeleted}}})
	if err != nil {
		return
	}
	now := s.now().UnixMilli()
	for i := range page.Records {
		rec := &page.Records[i]
		var c caRecord
		if json.Unmarshal(rec.Data, &c) != nil || c.DeleteTime > now {
			continue
		}
		op := s.core.Start(ctx, tenant, "PCA_CA_PURGE")
		_ = op.Done(rec.ID, s.purgeCA(ctx, rec))
	}
}

// SweepDeletedCAs purges every CA, in every tenant, whose scheduled
// deletion is due, destroying its HSM key: the family's janitor. It is
// safe to run on several replicas at once.
func (s *Service) SweepDeletedCAs(ctx context.Context) (int, error) {
	nowMs := s.now().UnixMilli()
	// Only the due entries: scheduled ones have a fixed-width purge_at
	// (all digits, so at least "0"); the index reads no other.
	page, err := s.store.List(ctx, store.Query{Kind: RecordIndex, Tenant: store.PlatformTenant,
		SortBy: "purge_at", Filters: []store.Filter{{Field: "purge_at", Value: "0", Match: store.AtLeast},
			{Field: "purge_at", Value: msField(nowMs + 1), Match: store.Less}}})
	if err != nil {
		return 0, signer.StoreErr(err, "CA index")
	}
	now := msField(nowMs)
	n := 0
	seen := map[string]bool{}
	for _, r := range page.Records {
		at := r.Fields["purge_at"]
		if at == "" || at > now || seen[r.Fields["tenant"]] {
			continue
		}
		seen[r.Fields["tenant"]] = true
		before, _ := s.store.CountRecords(ctx, RecordCA, r.Fields["tenant"])
		s.sweepTenant(ctx, r.Fields["tenant"])
		after, _ := s.store.CountRecords(ctx, RecordCA, r.Fields["tenant"])
		n += int(before - after)
	}
	return n, nil
}
