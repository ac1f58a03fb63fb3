package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/internal/storekit"
)

// Secondary indexes (see store.Index): P:{T}:ix:K:<field> is a sorted set
// whose members, all scored 0, are storekit.EntryKey(value, seq) + id, so
// ZRANGE BYLEX walks them in (value, seq) order and ZLEXCOUNT counts a
// range in O(log N). The record hash keeps ix:<field> -> value prefix, the
// write scripts remove exactly the members the hash names, so the set and
// the hashes agree whatever declarations the writers had. The platform
// hash P:{:platform}:ixready has a field K:<field> for each index that
// every record of every tenant has its entry in; Open builds the index
// before setting it. All replicas are meant to run one declaration: an
// index built by one replica is kept by the writes of a replica that
// declares it too.

func (s *Store) ixBase(tenant, kind string) string { return s.tkey(tenant, "ix:"+kind+":") }
func (s *Store) ixKey(tenant, kind, field string) string {
	return s.ixBase(tenant, kind) + field
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

// indexEntries appends rec's declared index entries: their index keys to
// keys, indexPairs to args.
func (s *Store) indexEntries(keys []string, args []any, rec *store.Record) ([]string, []any) {
	return s.ixKeys(keys, rec.Tenant, rec.Kind, s.ix.Fields(rec.Kind)), s.indexPairs(args, rec)
}

// ixKeys appends the index keys of fields.
func (s *Store) ixKeys(keys []string, tenant, kind string, fields []string) []string {
	for _, f := range fields {
		keys = append(keys, s.ixKey(tenant, kind, f))
	}
	return keys
}

// runIndexed runs a script that rewrites or removes a record's index
// entries (see fieldsCheck): build makes its KEYS and ARGV for a list of
// fields, first the kind's declared ones, then with the fields the script
// found on the record besides.
func (s *Store) runIndexed(ctx context.Context, sc *script, tenant, kind string, build func(fields []string) ([]string, []any)) ([]any, error) {
	fields := slices.Clone(s.ix.Fields(kind))
	for attempt := 0; ; attempt++ {
		keys, args := build(fields)
		reply, err := s.runScript(ctx, sc, keys, args...)
		if err != nil || replyCode(reply) != "FIELDS" {
			return reply, err
		}
		if attempt == 3 {
			return nil, fmt.Errorf("%w: %s %s: the record's indexes keep changing", store.ErrUnavailable, kind, tenant)
		}
		for _, f := range reply[1:] {
			if f, ok := f.(string); ok && storekit.CheckName("index field", f) == nil && !slices.Contains(fields, f) {
				fields = append(fields, f)
			}
		}
	}
}

// syncIndexes drops the marks of undeclared indexes and builds each
// declared index that has none.
func (s *Store) syncIndexes(ctx context.Context) error {
	marks, err := s.rdb.HKeys(ctx, s.readyKey()).Result()
	if err != nil {
		return wrap(err)
	}
	have := map[string]bool{}
	for _, m := range marks {
		kf := strings.SplitN(m, ":", 2)
		if len(kf) == 2 && s.ix.Has(kf[0], kf[1]) {
			have[m] = true
			continue
		}
		if err := s.rdb.HDel(ctx, s.readyKey(), m).Err(); err != nil {
			return wrap(err)
		}
	}
	for kind := range s.ix {
		var missing []string
		for _, f := range s.ix.Fields(kind) {
			if !have[kind+":"+f] {
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
			if err := s.rdb.HSet(ctx, s.readyKey(), kind+":"+f, "1").Err(); err != nil {
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

// scan calls fn with every key matching pattern: on a cluster, of every
// master (each holds its slots' keys), concurrently. A key may come twice
// (SCAN's guarantee, and a slot migrating meanwhile).
func (s *Store) scan(ctx context.Context, pattern string, fn func(key string)) error {
	one := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			fn(iter.Val())
		}
		return iter.Err()
	}
	if s.cluster == nil {
		return wrap(one(ctx, s.rdb))
	}
	return wrap(s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		return one(ctx, c)
	}))
}

// backfill gives every record of kind, in every tenant, its entries of
// fields, in chunks of one script each.
func (s *Store) backfill(ctx context.Context, kind string, fields []string) error {
	pattern := globEscape(s.prefix+":{") + "*" + globEscape("}:seq:"+kind)
	var mu sync.Mutex
	seen := map[string]bool{}
	var tenants []string
	err := s.scan(ctx, pattern, func(k string) {
		t := strings.TrimSuffix(strings.TrimPrefix(k, s.prefix+":{"), "}:seq:"+kind)
		if storekit.CheckName("tenant", t) != nil || s.seqKey(t, kind) != k {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !seen[t] {
			seen[t] = true
			tenants = append(tenants, t)
		}
	})
	if err != nil {
		return err
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
	keys := make([]string, len(recs), len(recs)+len(fields))
	args := []any{len(recs), len(fields)}
	for _, f := range fields {
		args = append(args, f)
	}
	for i := range recs {
		r := &recs[i]
		keys[i] = s.recKey(tenant, kind, r.ID)
		args = append(args, r.ID, strconv.FormatUint(r.Version, 10))
		for _, f := range fields {
			args = append(args, storekit.ValuePrefix(r.Fields[f]))
		}
	}
	keys = s.ixKeys(keys, tenant, kind, fields)
	reply, err := s.runScript(ctx, backfillScript, keys, args...)
	if err != nil {
		return nil, err
	}
	again := make([]string, 0, len(reply))
	for _, v := range reply[1:] {
		if i, ok := v.(int64); ok && i >= 1 && int(i) <= len(recs) {
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
