package signer

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hsmca/hsmca/store"
)

// Family is what the core needs to know of one API family, declared as
// data so that the core never names a family. Families are registered
// explicitly (Options.Families, StoreIndexes), never by init(): a store
// opened without an index drops it, so nothing may depend on link order.
type Family struct {
	Name string
	// Indexes are the store indexes the family's lists rely on; every
	// process that opens the store declares them (StoreIndexes).
	Indexes []store.Index
	// Quotas are the family's per-tenant quota resources.
	Quotas []QuotaDefault
	// KeyOwners are the record kinds whose records own an HSM key that
	// the keys API can use; resolution follows registration order.
	KeyOwners []KeyOwner
	// CAExpiry lists the family's CA certificates for the expiry gauges.
	CAExpiry []CAExpirySource
	// Janitors are the family's periodic background tasks (RunJanitors).
	Janitors []Janitor
}

// Janitor is a periodic background task of a family, such as purging
// what fell due in tenants nobody reads. Run does one round and reports
// how many things it handled. It gets the core because a Family is data
// declared before any Core exists.
type Janitor struct {
	Name string
	Run  func(ctx context.Context, c *Core) (int, error)
}

// coreFamily is what the core itself declares: credentials are listed by
// tenant, OAuth access tokens by client, and expired access tokens are
// purged.
func coreFamily() Family {
	return Family{Name: "core",
		Indexes: []store.Index{{Kind: kindToken, Field: "tenant"}, {Kind: kindToken, Field: "client"},
			{Kind: kindAccessKey, Field: "tenant"}, {Kind: kindOAuthClient, Field: "tenant"}},
		Janitors: []Janitor{{Name: "expired-access-tokens", Run: purgeExpiredAccessTokens}}}
}

// withCore returns the core's own family followed by fams.
func withCore(fams []Family) []Family {
	return append([]Family{coreFamily()}, fams...)
}

// setFamilies installs the registered families and what the core derives
// from them. Two families of one name, or two declarations of one quota
// resource, are wiring mistakes, refused at once.
func (c *Core) setFamilies(fams []Family) {
	c.families = withCore(fams)
	c.quotaDef = map[string]QuotaDefault{}
	names := map[string]bool{}
	for _, f := range c.families {
		if names[f.Name] {
			panic(fmt.Sprintf("signer: family %q registered twice", f.Name))
		}
		names[f.Name] = true
		for _, q := range f.Quotas {
			if _, dup := c.quotaDef[q.Resource]; dup {
				panic(fmt.Sprintf("signer: quota %q declared twice", q.Resource))
			}
			c.quotaDef[q.Resource] = q
		}
	}
}

// Families returns the registered families (Options.Families), without
// the core's own.
func (c *Core) Families() []Family { return slices.Clone(c.families[1:]) }

// StoreIndexes lists the store indexes of the core and of fams. Every
// process that opens the store passes those of every served family
// (internal/families), so that no list reads every record of a large kind
// and no index is dropped (see store.Index).
func StoreIndexes(fams ...Family) []store.Index {
	var out []store.Index
	for _, f := range withCore(fams) {
		out = append(out, f.Indexes...)
	}
	return out
}

// RunJanitors runs every registered janitor now and then every period
// until ctx ends. Errors are logged and the next round retries; janitors
// of one round run one after the other, so that a replica never loads
// the store with several sweeps at once.
func (c *Core) RunJanitors(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		c.janitorRound(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Core) janitorRound(ctx context.Context) {
	for _, f := range c.families {
		for _, j := range f.Janitors {
			if ctx.Err() != nil {
				return
			}
			if n, err := j.Run(ctx, c); err != nil {
				c.log.Warn("janitor round failed", "family", f.Name, "janitor", j.Name, "err", err)
			} else if n > 0 {
				c.log.Info("janitor round done", "family", f.Name, "janitor", j.Name, "count", n)
			}
		}
	}
}
