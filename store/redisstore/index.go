package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/internal/storekit"
)

// Secondary indexes (see store.Index): P:{T}:ix:K:<field> is a sorted set
// whose members, all scored 0, are storekit.EntryKey(value, seq) + id, so
// ZRANGE BYLEX walks them in (value, seq) order and ZLEXCOUNT counts a
// range in O(log N). The record hash keeps ix:<field> -> value prefix, the
// write scripts remove exactly the members the hash names, so the set and
// the hashes agree whatever declarations the writers had. A marker
// P:ixready:K:<field> says every record of every tenant has its entry;
// Open builds the index before setting it. All replicas are meant to run
// one declaration: an index built by one replica is kept by the writes of
// a replica that declares it too.

func (s *Store) ixBase(tenant, kind string) string { return s.tkey(tenant, "ix:"+kind+":") }
func (s *Store) markerKey(kind, field string) string {
	return s.prefix + ":ixready:" + kind + ":" + field
}

// indexPairs appends the count and (field, value prefix) pairs of rec's
// declared index entries.
func (s *Store) indexPairs(args []any, rec *store.Record) []any {
	fs := s.ix.Fields(rec.Kind)
	args = append(args, len(fs))
	for _, f := range fs {
		args = append(args, f, storekit.ValuePrefix(rec.Fields[f]))
	}
	return args
}

// indexArgs appends the index key base and indexPairs.
func (s *Store) indexArgs(args []any, rec *store.Record) []any {
	return s.indexPairs(append(args, s.ixBase(rec.Tenant, rec.Kind)), rec)
}

// syncIndexes drops the markers of undeclared indexes and builds each
// declared index that has none.
func (s *Store) syncIndexes(ctx context.Context) error {
	var markers []string
	iter := s.rdb.Scan(ctx, 0, globEscape(s.prefix+":ixready:")+"*", 100).Iterator()
	for iter.Next(ctx) {
		markers = append(markers, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return wrap(err)
	}
	have := map[string]bool{}
	for _, m := range markers {
		kf := strings.SplitN(strings.TrimPrefix(m, s.prefix+":ixready:"), ":", 2)
		if len(kf) == 2 && s.ix.Has(kf[0], kf[1]) {
			have[m] = true
			continue
		}
		if err := s.rdb.Del(ctx, m).Err(); err != nil {
			return wrap(err)
		}
	}
	for kind := range s.ix {
		var missing []string
		for _, f := range s.ix.Fields(kind) {
			if !have[s.markerKey(kind, f)] {
				missing = append(missing, f)
			}
		}
		if len(missing) == 0 {
			continue
		}
		if err := s.backfill(ctx, kind, missing); err != nil {
			return err
		}
		for _, f := range missing {
			if err := s.rdb.Set(ctx, s.markerKey(kind, f), "1", 0).Err(); err != nil {
				return wrap(err)
			}
		}
	}
	return nil
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// backfill gives every record of kind, in every tenant, its entries of
// fields, in chunks of one script each.
func (s *Store) backfill(ctx context.Context, kind string, fields []string) error {
	pattern := globEscape(s.prefix+":{") + "*" + globEscape("}:seq:"+kind)
	iter := s.rdb.Scan(ctx, 0, pattern, 100).Iterator()
	var tenants []string
	for iter.Next(ctx) {
		k := iter.Val()
		t := strings.TrimSuffix(strings.TrimPrefix(k, s.prefix+":{"), "}:seq:"+kind)
		if storekit.CheckName("tenant", t) == nil && s.seqKey(t, kind) == k {
			tenants = append(tenants, t)
		}
	}
	if err := iter.Err(); err != nil {
		return wrap(err)
	}
	for _, t := range tenants {
		// By score, not rank: deletions meanwhile do not shift the walk.
		after := "-inf"
		for {
			zs, err := s.rdb.ZRangeByScoreWithScores(ctx, s.seqKey(t, kind),
				&redis.ZRangeBy{Min: after, Max: "+inf", Count: 500}).Result()
			if err != nil {
				return wrap(err)
			}
			ids := make([]string, len(zs))
			for i, z := range zs {
				ids[i], _ = z.Member.(string)
			}
			for len(ids) > 0 {
				if ids, err = s.backfillChunk(ctx, t, kind, fields, ids); err != nil {
					return err
				}
			}
			if len(zs) < 500 {
				break
			}
			after = "(" + strconv.FormatUint(uint64(zs[len(zs)-1].Score), 10)
		}
	}
	return nil
}

// backfillChunk adds the missing entries of ids and returns the ids whose
// record changed between the read and the script (to be read again).
func (s *Store) backfillChunk(ctx context.Context, tenant, kind string, fields, ids []string) ([]string, error) {
	recs, err := s.loadDocs(ctx, tenant, kind, ids)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, nil
	}
	keys := make([]string, len(recs))
	args := []any{s.ixBase(tenant, kind)}
	for i := range recs {
		r := &recs[i]
		keys[i] = s.recKey(tenant, kind, r.ID)
		args = append(args, r.ID, strconv.FormatUint(r.Version, 10), len(fields))
		for _, f := range fields {
			args = append(args, f, storekit.ValuePrefix(r.Fields[f]))
		}
	}
	changed, err := backfillScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrap(err)
	}
	again := make([]string, 0, len(changed))
	for _, i := range changed {
		if i >= 1 && int(i) <= len(recs) {
			again = append(again, recs[i-1].ID)
		}
	}
	return again, nil
}

// redisIndex is storekit.IndexAccess over one (tenant, kind). Its reads
// are separate commands, not a snapshot; storekit re-checks every record
// it loads against the query.
type redisIndex struct {
	s            *Store
	ctx          context.Context
	tenant, kind string
}

func lexBounds(r storekit.Range) (lo, hi string) {
	lo, hi = "-", "+"
	if r.Lo != "" {
		lo = "[" + r.Lo
	}
	if r.Hi != "" {
		hi = "(" + r.Hi
	}
	return lo, hi
}

func (ri *redisIndex) Scan(field string, r storekit.Range, desc bool, skip, hint int, fn func(storekit.Entry) bool) error {
	if r.Empty() {
		return nil
	}
	key := ri.s.tkey(ri.tenant, "ix:"+ri.kind+":"+field)
	lo, hi := lexBounds(r)
	chunk := 256
	if hint > 0 {
		chunk = max(hint, 16)
	}
	offset := int64(skip)
	for {
		a := redis.ZRangeArgs{Key: key, Start: lo, Stop: hi, ByLex: true, Offset: offset, Count: int64(chunk)}
		if desc {
			a.Start, a.Stop, a.Rev = hi, lo, true
		}
		ms, err := ri.s.rdb.ZRangeArgs(ri.ctx, a).Result()
		if err != nil {
			return wrap(err)
		}
		for _, m := range ms {
			e, err := storekit.ParseEntry(m)
			if err != nil {
				return fmt.Errorf("redis store: %w", err)
			}
			if !fn(e) {
				return nil
			}
		}
		if len(ms) < chunk {
			return nil
		}
		// Continue after the last member read.
		if desc {
			hi = "(" + ms[len(ms)-1]
		} else {
			lo = "(" + ms[len(ms)-1]
		}
		offset = 0
		chunk = min(chunk*4, 10000)
	}
}

func (ri *redisIndex) Count(field string, r storekit.Range) (int, error) {
	if r.Empty() {
		return 0, nil
	}
	lo, hi := lexBounds(r)
	n, err := ri.s.rdb.ZLexCount(ri.ctx, ri.s.tkey(ri.tenant, "ix:"+ri.kind+":"+field), lo, hi).Result()
	return int(n), wrap(err)
}

func (ri *redisIndex) Load(ids []string) ([]store.Record, error) {
	return ri.s.loadDocs(ri.ctx, ri.tenant, ri.kind, ids)
}

func (ri *redisIndex) Len() (int, error) {
	n, err := ri.s.rdb.ZCard(ri.ctx, ri.s.seqKey(ri.tenant, ri.kind)).Result()
	return int(n), wrap(err)
}
