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
//	"meta"  ["ix\x00"+<kind>+"\x00"+<field>]   marker: the index is complete
//
// An entry key is storekit.EntryKey(value, seq). Every write keeps the
// declared indexes of its kind in its own transaction; Open builds a
// declared index that has no marker and drops an undeclared one, so that
// declaring it again later rebuilds it instead of trusting stale entries.

var (
	bMeta    = []byte("meta")
	bIndexes = []byte("x")
)

func markerKey(kind, field string) []byte { return []byte("ix\x00" + kind + "\x00" + field) }

// indexBucket is the bucket of one field's index; nil when absent and not
// created.
func indexBucket(kb *kindBuckets, field string, create bool) (*bolt.Bucket, error) {
	if !create {
		xb := kb.kind.Bucket(bIndexes)
		if xb == nil {
			return nil, nil
		}
		return xb.Bucket([]byte(field)), nil
	}
	xb, err := kb.kind.CreateBucketIfNotExists(bIndexes)
	if err != nil {
		return nil, err
	}
	return xb.CreateBucketIfNotExists([]byte(field))
}

// putIndexes adds the entries of a new record.
func (s *Store) putIndexes(kb *kindBuckets, rec *store.Record) error {
	for _, f := range s.ix.Fields(rec.Kind) {
		b, err := indexBucket(kb, f, true)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(storekit.EntryKey(rec.Fields[f], rec.Seq)), []byte(rec.ID)); err != nil {
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
		b, err := indexBucket(kb, f, true)
		if err != nil {
			return err
		}
		if err := b.Delete([]byte(storekit.EntryKey(old.Fields[f], old.Seq))); err != nil {
			return err
		}
		if rec != nil {
			if err := b.Put([]byte(storekit.EntryKey(rec.Fields[f], rec.Seq)), []byte(rec.ID)); err != nil {
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
	for k, _ := c.Seek([]byte("ix\x00")); k != nil && bytes.HasPrefix(k, []byte("ix\x00")); k, _ = c.Next() {
		parts := strings.SplitN(string(k[3:]), "\x00", 2)
		if len(parts) != 2 {
			continue
		}
		marked[string(k)] = true
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
	for _, d := range drop {
		for _, t := range tenants {
			kb, err := openKind(tx, t, d[0], false)
			if err != nil {
				return err
			}
			if kb == nil {
				continue
			}
			if xb := kb.kind.Bucket(bIndexes); xb != nil && xb.Bucket([]byte(d[1])) != nil {
				if err := xb.DeleteBucket([]byte(d[1])); err != nil {
					return err
				}
			}
		}
		if err := meta.Delete(markerKey(d[0], d[1])); err != nil {
			return err
		}
	}
	for _, d := range build {
		for _, t := range tenants {
			kb, err := openKind(tx, t, d[0], false)
			if err != nil {
				return err
			}
			if kb == nil {
				continue
			}
			if xb := kb.kind.Bucket(bIndexes); xb != nil && xb.Bucket([]byte(d[1])) != nil {
				if err := xb.DeleteBucket([]byte(d[1])); err != nil {
					return err
				}
			}
			b, err := indexBucket(kb, d[1], true)
			if err != nil {
				return err
			}
			err = kb.recs.ForEach(func(id, v []byte) error {
				r, err := decodeRecord(v)
				if err != nil {
					return err
				}
				return b.Put([]byte(storekit.EntryKey(r.Fields[d[1]], r.Seq)), bytes.Clone(id))
			})
			if err != nil {
				return fmt.Errorf("build index %s.%s of %s: %w", d[0], d[1], t, err)
			}
		}
		if err := meta.Put(markerKey(d[0], d[1]), []byte{1}); err != nil {
			return err
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
