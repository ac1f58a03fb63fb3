package boltstore

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/internal/storekit"
)

// BulkCreate inserts many records of one tenant in one transaction, with
// the same checks, indexes and counters as that many Create calls, and
// reserves len(recs) units of quota (when quota.Resource is set) in the
// same step. It is all or nothing: an id or unique key already taken, or
// a full quota, writes none of them. It serves loaders that fill a store
// with the daemon stopped (the benchmark's seeding); one transaction per
// batch replaces one commit per record.
func (s *Store) BulkCreate(ctx context.Context, recs []store.Record, quota store.Quota) error {
	if len(recs) == 0 {
		return nil
	}
	type prepared struct {
		data json.RawMessage
		uniq []string
	}
	prep := make([]prepared, len(recs))
	tenant := recs[0].Tenant
	for i := range recs {
		data, uniq, err := storekit.CheckRecord(&recs[i])
		if err != nil {
			return err
		}
		if recs[i].Tenant != tenant {
			return storekit.Invalid("bulk create spans tenants %q and %q", tenant, recs[i].Tenant)
		}
		prep[i] = prepared{data, uniq}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := storekit.Now()
	stored := make([]store.Record, len(recs))
	err := s.w.run(func(tx *bolt.Tx) error {
		kbs := map[string]*kindBuckets{}
		for i := range recs {
			r := &recs[i]
			kb := kbs[r.Kind]
			if kb == nil {
				var err error
				if kb, err = openKind(tx, tenant, r.Kind, true); err != nil {
					return err
				}
				kbs[r.Kind] = kb
			}
			if kb.recs.Get([]byte(r.ID)) != nil {
				return fmt.Errorf("%w: %s %s/%s", store.ErrExists, r.Kind, tenant, r.ID)
			}
			for _, u := range prep[i].uniq {
				if kb.uniq.Get([]byte(u)) != nil {
					return fmt.Errorf("%w: %s %s unique key %q", store.ErrExists, r.Kind, tenant, u)
				}
			}
			seq, err := kb.kind.NextSequence()
			if err != nil {
				return err
			}
			st := *r
			st.Unique, st.Data = prep[i].uniq, prep[i].data
			st.Seq, st.Version, st.Created, st.Updated = seq, 1, now, now
			b, err := encodeRecord(&st)
			if err != nil {
				return err
			}
			id := []byte(r.ID)
			s.gens.touch(r.Kind)
			if err := kb.recs.Put(id, b); err != nil {
				return err
			}
			for _, u := range st.Unique {
				if err := kb.uniq.Put([]byte(u), id); err != nil {
					return err
				}
			}
			if err := kb.seq.Put(u64(seq), id); err != nil {
				return err
			}
			if err := s.putIndexes(kb, &st); err != nil {
				return err
			}
			if err := kb.addCount(1); err != nil {
				return err
			}
			stored[i] = st
		}
		if quota.Resource == "" {
			return nil
		}
		tb, err := tenantBucket(tx, tenant, true)
		if err != nil {
			return err
		}
		usage := int64(0)
		if qb := tb.Bucket(bQuota); qb != nil {
			usage = int64(getU64(qb.Get([]byte(quota.Resource))))
		}
		if quota.Limit >= 0 && usage+int64(len(recs)) > quota.Limit {
			return fmt.Errorf("%w: %s %s: %d + %d over %d", store.ErrQuotaExceeded, tenant, quota.Resource, usage, len(recs), quota.Limit)
		}
		return addQuota(tb, quota.Resource, int64(len(recs)))
	})
	if err != nil {
		return wrap(err)
	}
	copy(recs, stored)
	return nil
}
