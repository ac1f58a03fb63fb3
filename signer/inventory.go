package signer

import (
	"context"
	"time"

	"github.com/hsmca/hsmca/store"
)

// The inventory turns the store's state into the gauges that alerts need
// and that no request path can keep current by itself: quota use per
// resource and the expiry of CA certificates. Neither carries a tenant or
// an id label; each reports the worst case across tenants.

// CAExpirySource says how to read the active CA certificates of one
// record kind, for the CA-expiry gauges: Active reports a record's
// notAfter and whether it counts. Families declare theirs
// (Family.CAExpiry).
type CAExpirySource struct {
	Label      string // the metric's kind label
	RecordKind string // the store record kind
	Active     func(rec *store.Record) (notAfter time.Time, ok bool)
}

// caExpiry lists the registered CA-expiry sources.
func (e *Core) caExpiry() []CAExpirySource {
	var out []CAExpirySource
	for _, f := range e.families {
		out = append(out, f.CAExpiry...)
	}
	return out
}

// RefreshInventory recomputes the inventory gauges once.
func (e *Core) RefreshInventory(ctx context.Context) error {
	tenants, err := e.store.EventTenants(ctx)
	if err != nil {
		return StoreErr(err, "tenants")
	}
	resources := e.QuotaResources()
	sources := e.caExpiry()
	worst := map[string]float64{}
	for _, res := range resources {
		worst[res] = 0
	}
	soonest := map[string]time.Time{}
	count := map[string]int{}
	now := e.now()
	for _, t := range tenants {
		if t == store.PlatformTenant {
			continue
		}
		for _, res := range resources {
			limit := e.QuotaLimit(res)
			if limit <= 0 {
				continue
			}
			used, err := e.store.QuotaUsage(ctx, t, res)
			if err != nil {
				return StoreErr(err, "quota")
			}
			if r := float64(used) / float64(limit); r > worst[res] {
				worst[res] = r
			}
		}
		for _, src := range sources {
			q := store.Query{Kind: src.RecordKind, Tenant: t, Limit: 500}
			for {
				page, err := e.store.List(ctx, q)
				if err != nil {
					return StoreErr(err, "CA inventory")
				}
				for i := range page.Records {
					na, ok := src.Active(&page.Records[i])
					if !ok {
						continue
					}
					count[src.Label]++
					if s, seen := soonest[src.Label]; !seen || na.Before(s) {
						soonest[src.Label] = na
					}
				}
				if page.NextCursor == "" {
					break
				}
				q.Cursor = page.NextCursor
			}
		}
	}
	for res, r := range worst {
		e.metrics.QuotaUsage.WithLabelValues(res).Set(r)
	}
	for _, src := range sources {
		e.metrics.CACertificates.WithLabelValues(src.Label).Set(float64(count[src.Label]))
		if s, ok := soonest[src.Label]; ok {
			e.metrics.CAExpiry.WithLabelValues(src.Label).Set(s.Sub(now).Seconds())
		} else {
			// No active CA of the kind: no expiry to report.
			e.metrics.CAExpiry.DeleteLabelValues(src.Label)
		}
	}
	return nil
}

// StartInventory probes the HSM and the store and refreshes the inventory
// gauges now and then every interval until Close.
func (e *Core) StartInventory(interval time.Duration) {
	e.inventoryOnce.Do(func() {
		e.inventoryStop = make(chan struct{})
		e.inventoryDone = make(chan struct{})
		go func() {
			defer close(e.inventoryDone)
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				ctx, cancel := context.WithTimeout(context.Background(), interval)
				// The probe keeps hsmca_component_up current even when
				// nothing polls /readyz.
				e.Readiness(ctx)
				if err := e.RefreshInventory(ctx); err != nil {
					e.log.Warn("inventory gauges not refreshed", "err", err)
				}
				cancel()
				select {
				case <-e.inventoryStop:
					return
				case <-tick.C:
				}
			}
		}()
	})
}

func (e *Core) stopInventory() {
	if e.inventoryStop != nil {
		close(e.inventoryStop)
		<-e.inventoryDone
		e.inventoryStop = nil
	}
}
