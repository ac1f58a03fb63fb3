package boltstore

import (
	"bytes"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/internal/storekit"
)

// Secondary indexes (see store.Index):
//
//	"tenants"/<tenant>/"k/"+<kind>/"x"/<field>  [entry key] -> id
//	                                /"xc"/<field> [value prefix] -> entries
//	                                              of that value, 8 bytes
//	"meta"  ["ix\x00"+<kind>+"\x00"+<field>]   marker: the index is complete
//
// The per-value counts make the count of one value (an Equal filter's
// Total) one read; other ranges are counted by walking their keys.
// An entry key is storekit.EntryKey(value, seq). Every write keeps the
// declared indexes of its kind in its own transaction; Open builds a
// declared index that has no marker and drops an undeclared one, so that
// declaring it again later rebuilds it instead of trusting stale entries.

var (
	bMeta     = []byte("meta")
	bIndexes  = []byte("x")
	bIxCounts = []byte("xc")
	// markerV is the marker's value; an index whose marker holds another
	// (one built before the per-value counts) is built again.
	markerV = []byte{2}
)

func markerKey(kind, field string) []byte { return []byte("ix\x00" + kind + "\x00" + field) }

// indexBucket is the bucket of one field's index; nil when absent and not
// created.
func indexBucket(kb *kindBuckets, field string, create bool) (*bolt.Bucket, error) {
	return fieldBucket(kb, bIndexes, field, create)
}

// countBucket is the bucket of one field's per-value counts.
func countBucket(kb *kindBuckets, field string, create bool) (*bolt.Bucket, error) {
	return fieldBucket(kb, bIxCounts, field, create)
}

// fieldBucket is the bucket named field under the kind's bucket parent.
func fieldBucket(kb *kindBuckets, parent []byte, field string, create bool) (*bolt.Bucket, error) {
	if !create {
		pb := kb.kind.Bucket(parent)
		if pb == nil {
			return nil, nil
		}
		return pb.Bucket([]byte(field)), nil
	}
	pb, err := kb.kind.CreateBucketIfNotExists(parent)
	if err != nil {
		return nil, err
	}
	return pb.CreateBucketIfNotExists([]byte(field))
}

// putEntry adds (delta 1) or removes (delta -1) one entry and moves its
// value's count.
func putEntry(kb *kindBuckets, field, value string, seq uint64, id string, delta int64) error {
	b, err := indexBucket(kb, field, true)
	if err != nil {
		return err
	}
	key := []byte(storekit.EntryKey(value, seq))
	if delta > 0 {
		err = b.Put(key, []byte(id))
	} else {
		err = b.Delete(key)
	}
	if err != nil {
		return err
	}
	cb, err := countBucket(kb, field, true)
	if err != nil {
		return err
	}
	vk := []byte(storekit.ValuePrefix(value))
	n := int64(getU64(cb.Get(vk))) + delta
	if n <= 0 {
		return cb.Delete(vk)
	}
	return cb.Put(vk, u64(uint64(n)))
}

// putIndexes adds the entries of a new record.
func (s *Store) putIndexes(kb *kindBuckets, rec *store.Record) error {
	for _, f := range s.ix.Fields(rec.Kind) {
		if err := putEntry(kb, f, rec.Fields[f], rec.Seq, rec.ID, 1); err != nil {
			return err
		}
	}
	return nil
}

// moveIndexes replaces the entries of old by those of rec (nil: removes
// them), touching only the fields whose value changed.
func (s *Store) moveIndexes(kb *kindBuckets, old, rec *store.Record) error {
	for _, f := range s.ix.Fields(old.Kind) {
		if rec != nil && rec.Fields[f] == old.Fields[f] {
			continue
		}
		if err := putEntry(kb, f, old.Fields[f], old.Seq, old.ID, -1); err != nil {
			return err
		}
		if rec != nil {
			if err := putEntry(kb, f, rec.Fields[f], rec.Seq, rec.ID, 1); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncIndexes makes the file's indexes those declared, in one transaction:
// it drops the undeclared ones and builds every declared one without a
// marker from the records.
func (s *Store) syncIndexes(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bMeta)
	if err != nil {
		return err
	}
	marked := map[string]bool{}
	var drop [][2]string
	c := meta.Cursor()
	for k, v := c.Seek([]byte("ix\x00")); k != nil && bytes.HasPrefix(k, []byte("ix\x00")); k, v = c.Next() {
		parts := strings.SplitN(string(k[3:]), "\x00", 2)
		if len(parts) != 2 {
			continue
		}
		marked[string(k)] = bytes.Equal(v, markerV)
		if !s.ix.Has(parts[0], parts[1]) {
			drop = append(drop, [2]string{parts[0], parts[1]})
		}
	}
	var build [][2]string
	for kind := range s.ix {
		for _, f := range s.ix.Fields(kind) {
			if !marked[string(markerKey(kind, f))] {
				build = append(build, [2]string{kind, f})
			}
		}
	}
	if len(drop) == 0 && len(build) == 0 {
		return nil
	}
	root := tx.Bucket(bTenants)
	var tenants []string
	if err := root.ForEach(func(k, v []byte) error {
		if v == nil {
			tenants = append(tenants, string(k))
		}
		return nil
	}); err != nil {
		return err
	}
	// eachKind runs fn on the kind's buckets of every tenant that has it.
	eachKind := func(kind string, fn func(tenant string, kb *kindBuckets) error) error {
		for _, t := range tenants {
			kb, err := openKind(tx, t, kind, false)
			if err != nil {
				return err
			}
			if kb != nil {
				if err := fn(t, kb); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, d := range drop {
		if err := eachKind(d[0], func(_ string, kb *kindBuckets) error { return dropIndex(kb, d[1]) }); err != nil {
			return err
		}
		if err := meta.Delete(markerKey(d[0], d[1])); err != nil {
			return err
		}
	}
	for _, d := range build {
		err := eachKind(d[0], func(t string, kb *kindBuckets) error {
			if err := dropIndex(kb, d[1]); err != nil {
				return err
			}
			err := kb.recs.ForEach(func(id, v []byte) error {
				r, err := decodeRecord(v)
				if err != nil {
					return err
				}
				return putEntry(kb, d[1], r.Fields[d[1]], r.Seq, string(id), 1)
			})
			if err != nil {
				return fmt.Errorf("build index %s.%s of %s: %w", d[0], d[1], t, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := meta.Put(markerKey(d[0], d[1]), markerV); err != nil {
			return err
		}
	}
	return nil
}

// dropIndex removes one field's entries and counts.
func dropIndex(kb *kindBuckets, field string) error {
	for _, name := range [][]byte{bIndexes, bIxCounts} {
		if pb := kb.kind.Bucket(name); pb != nil && pb.Bucket([]byte(field)) != nil {
			if err := pb.DeleteBucket([]byte(field)); err != nil {
				return err
			}
		}
	}
	return nil
}

// boltIndex is storekit.IndexAccess within one read transaction.
type boltIndex struct{ kb *kindBuckets }

func (bi boltIndex) Scan(field string, r storekit.Range, desc bool, skip, _ int, fn func(storekit.Entry) bool) error {
	b, err := indexBucket(bi.kb, field, false)
	if err != nil || b == nil {
		return err
	}
	c := b.Cursor()
	var k, v []byte
	switch {
	case !desc && r.Lo == "":
		k, v = c.First()
	case !desc:
		k, v = c.Seek([]byte(r.Lo))
	case r.Hi == "":
		k, v = c.Last()
	default:
		if k, _ = c.Seek([]byte(r.Hi)); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	lo, hi := []byte(r.Lo), []byte(r.Hi)
	for ; k != nil; k, v = step(c, desc) {
		if !desc && len(hi) > 0 && bytes.Compare(k, hi) >= 0 {
			return nil
		}
		if desc && bytes.Compare(k, lo) < 0 {
			return nil
		}
		if skip > 0 {
			skip--
			continue
		}
		e, err := storekit.ParseEntry(string(k))
		if err != nil {
			return err
		}
		e.ID = string(v)
		if !fn(e) {
			return nil
		}
	}
	return nil
}

func (bi boltIndex) Count(field string, r storekit.Range) (int, error) {
	if value, ok := r.OneValue(); ok {
		cb, err := countBucket(bi.kb, field, false)
		if err != nil || cb == nil {
			return 0, err
		}
		return int(getU64(cb.Get([]byte(value)))), nil
	}
	b, err := indexBucket(bi.kb, field, false)
	if err != nil || b == nil {
		return 0, err
	}
	c := b.Cursor()
	k, _ := c.First()
	if r.Lo != "" {
		k, _ = c.Seek([]byte(r.Lo))
	}
	n, hi := 0, []byte(r.Hi)
	for ; k != nil && (len(hi) == 0 || bytes.Compare(k, hi) < 0); k, _ = c.Next() {
		n++
	}
	return n, nil
}

func (bi boltIndex) Load(ids []string) ([]store.Record, error) {
	out := make([]store.Record, 0, len(ids))
	for _, id := range ids {
		v := bi.kb.recs.Get([]byte(id))
		if v == nil {
			continue
		}
		r, err := decodeRecord(v)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, nil
}

func (bi boltIndex) Len() (int, error) { return int(getU64(bi.kb.kind.Get(kCount))), nil }
