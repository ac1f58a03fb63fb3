package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/internal/storekit"
)

// New records through the event journal (journal.go): what the journal
// holds of them until a checkpoint puts them into bbolt.

// journaledCreate is a new record as bbolt will store it.
type journaledCreate struct {
	rec      *store.Record // decoded from raw: nothing else holds it
	raw      []byte
	resource string // the quota it counts against; "" for none
}

// createdSet indexes new records not yet in bbolt.
type createdSet struct {
	list  []*journaledCreate
	byID  map[string]*journaledCreate // tenant, kind, id
	uniq  map[string]*journaledCreate // tenant, kind, unique key
	quota map[string]int64            // tenant, resource: records counted
	seq   map[string]uint64           // tenant, kind: the last sequence number taken
}

func refKey(parts ...string) string {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return string(b)
}

func (c *createdSet) add(jc *journaledCreate) {
	if c.byID == nil {
		c.byID, c.uniq = map[string]*journaledCreate{}, map[string]*journaledCreate{}
		c.quota, c.seq = map[string]int64{}, map[string]uint64{}
	}
	r := jc.rec
	c.list = append(c.list, jc)
	c.byID[refKey(r.Tenant, r.Kind, r.ID)] = jc
	for _, u := range r.Unique {
		c.uniq[refKey(r.Tenant, r.Kind, u)] = jc
	}
	if jc.resource != "" {
		c.quota[refKey(r.Tenant, jc.resource)]++
	}
	tk := refKey(r.Tenant, r.Kind)
	c.seq[tk] = max(c.seq[tk], r.Seq)
}

func (c *createdSet) reset() { *c = createdSet{} }

// hasKind reports whether any record of the tenant's kind is in the set.
func (c *createdSet) hasKind(tenant, kind string) bool {
	_, ok := c.seq[refKey(tenant, kind)]
	return ok
}

// createCall is a Create the journal may take: the record as checked,
// and the answer take gives.
type createCall struct {
	rec   *store.Record
	data  json.RawMessage
	uniq  []string
	quota *store.Quota
	guard *store.Guard
	event []json.RawMessage // normalized: none or one

	taken   bool         // the journal answered (else bbolt did)
	stored  store.Record // the record as stored, when not refused
	refused error        // the refusal, as Create's in bbolt
}

// check makes a new record's checks as Create does in bbolt, against db
// (r), the records pending and those staged earlier in the group, and
// returns the record to write; nil with c.refused set when refused.
func (j *journal) check(r *reader, guard func(*reader, string, *store.Guard) (bool, error), staged *createdSet, c *createCall, now time.Time) (*journaledCreate, error) {
	c.refused = nil
	t, kind, id := c.rec.Tenant, c.rec.Kind, c.rec.ID
	if g := c.guard; g != nil {
		ok, err := guard(r, t, g)
		if err != nil {
			return nil, err
		}
		if !ok {
			c.refused = fmt.Errorf("%w", storekit.GuardFailed(g))
			return nil, nil
		}
	}
	tx, err := r.get()
	if err != nil {
		return nil, err
	}
	kb, err := openKind(tx, t, kind, false)
	if err != nil {
		return nil, err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.created.byID[refKey(t, kind, id)] != nil || staged.byID[refKey(t, kind, id)] != nil ||
		(kb != nil && kb.recs.Get([]byte(id)) != nil) {
		c.refused = fmt.Errorf("%w: %s %s/%s", store.ErrExists, kind, t, id)
		return nil, nil
	}
	for _, u := range c.uniq {
		if j.created.uniq[refKey(t, kind, u)] != nil || staged.uniq[refKey(t, kind, u)] != nil ||
			(kb != nil && kb.uniq.Get([]byte(u)) != nil) {
			c.refused = fmt.Errorf("%w: %s %s unique key %q", store.ErrExists, kind, t, u)
			return nil, nil
		}
	}
	resource := ""
	if q := c.quota; q != nil {
		resource = q.Resource
		var usage int64
		if tb, err := tenantBucket(tx, t, false); err != nil {
			return nil, err
		} else if tb != nil {
			if qb := tb.Bucket(bQuota); qb != nil {
				usage = int64(getU64(qb.Get([]byte(q.Resource))))
			}
		}
		usage += j.created.quota[refKey(t, q.Resource)] + staged.quota[refKey(t, q.Resource)]
		if q.Limit >= 0 && usage+1 > q.Limit {
			c.refused = fmt.Errorf("%w: %s %s: %d of %d", store.ErrQuotaExceeded, t, q.Resource, usage, q.Limit)
			return nil, nil
		}
	}
	var seq uint64
	if kb != nil {
		seq = kb.kind.Sequence()
	}
	tk := refKey(t, kind)
	seq = max(seq, j.created.seq[tk], staged.seq[tk]) + 1
	stored := *c.rec
	stored.Unique, stored.Data = c.uniq, c.data
	stored.Seq, stored.Version, stored.Created, stored.Updated = seq, 1, now, now
	raw, err := encodeRecord(&stored)
	if err != nil {
		return nil, err
	}
	own, err := decodeRecord(raw)
	if err != nil {
		return nil, err
	}
	c.stored = stored
	return &journaledCreate{rec: own, raw: raw, resource: resource}, nil
}

// pendingRaw is a new record the journal holds (stored form).
func (j *journal) pendingRaw(tenant, kind, id string) ([]byte, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if jc := j.created.byID[refKey(tenant, kind, id)]; jc != nil {
		return jc.raw, true
	}
	return nil, false
}

// pendingByUnique is the new record holding a unique key, if the journal
// holds it.
func (j *journal) pendingByUnique(tenant, kind, key string) (id string, raw []byte, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if jc := j.created.uniq[refKey(tenant, kind, key)]; jc != nil {
		return jc.rec.ID, jc.raw, true
	}
	return "", nil, false
}

// holdsKind reports whether new records of tenant's kind wait in the
// journal.
func (j *journal) holdsKind(tenant, kind string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.created.hasKind(tenant, kind)
}

// holdsQuota reports whether new records counted against a tenant's
// quota wait in the journal.
func (j *journal) holdsQuota(tenant, resource string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.created.quota[refKey(tenant, resource)] > 0
}

// putNew writes a new record (checked) into kb with its unique keys, its
// entry in creation order, its indexes, the kind's count and sequence, and
// its quota use.
func (s *Store) putNew(kb *kindBuckets, c *journaledCreate) error {
	rec := c.rec
	id := []byte(rec.ID)
	s.gens.touch(rec.Kind)
	if err := kb.recs.Put(id, c.raw); err != nil {
		return err
	}
	for _, u := range rec.Unique {
		if err := kb.uniq.Put([]byte(u), id); err != nil {
			return err
		}
	}
	if err := kb.seq.Put(u64(rec.Seq), id); err != nil {
		return err
	}
	if err := s.putIndexes(kb, rec); err != nil {
		return err
	}
	if err := kb.addCount(1); err != nil {
		return err
	}
	if rec.Seq > kb.kind.Sequence() {
		if err := kb.kind.SetSequence(rec.Seq); err != nil {
			return err
		}
	}
	if c.resource != "" {
		return addQuota(kb.tenant, c.resource, 1)
	}
	return nil
}

// putJournaled writes a record the journal took into bbolt (at a
// checkpoint, or at open after a crash); one bbolt holds already is left.
func (s *Store) putJournaled(tx *bolt.Tx, c *journaledCreate) error {
	kb, err := openKind(tx, c.rec.Tenant, c.rec.Kind, true)
	if err != nil {
		return err
	}
	if kb.recs.Get([]byte(c.rec.ID)) != nil {
		return nil
	}
	return s.putNew(kb, c)
}

// settle has the journal's new records of tenant's kind put into bbolt
// before a read of many records of that kind.
func (s *Store) settle(tenant, kind string) error {
	if j := s.w.j; j == nil || !j.holdsKind(tenant, kind) {
		return nil
	}
	return s.copyJournal()
}

// copyJournal has the journal copied into bbolt: a commit of nothing of
// its own, whose transaction copies it.
func (s *Store) copyJournal() error {
	return wrap(s.w.run(func(*bolt.Tx) error { return nil }))
}

// journaled answers a read of one record the journal holds (raw).
func (s *Store) journaled(ctx context.Context, kind, tenant, id string, raw []byte) (*store.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.dec.Decode(kind+"\x00"+tenant+"\x00"+id, raw, decodeRecord)
}
