package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/internal/storekit"
)

// bulkChunk is how many records one script call writes: large enough to
// spare round trips, small enough that Redis is not blocked for long.
const bulkChunk = 500

// bulkScript inserts a chunk of records of one (tenant, kind) as that many
// runs of createScript would, refusing the whole chunk when an id or a
// unique key is taken or the quota cannot take them all.
// KEYS: uniq index, seq index, seq counter, quota, the n rec keys, the
// index keys of the m fields
// ARGV: quota resource or "", quota limit, n, m, the m fields, then per
// record: id, doc without seq, uniq JSON, number of unique keys, unique
// keys..., the m value prefixes
var bulkScript = newScript(`
local n, m = tonumber(ARGV[3]), tonumber(ARGV[4])
local a0 = 5 + m
local a = a0
for i = 1, n do
  if redis.call('EXISTS', KEYS[4 + i]) == 1 then return {'EXISTS', 'id'} end
  local nu = tonumber(ARGV[a + 3])
  for j = 1, nu do
    if redis.call('HEXISTS', KEYS[1], ARGV[a + 3 + j]) == 1 then return {'EXISTS', ARGV[a + 3 + j]} end
  end
  a = a + 4 + nu + m
end
if ARGV[1] ~= '' then
  local usage = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')
  local limit = tonumber(ARGV[2])
  if limit >= 0 and usage + n > limit then return {'QUOTA', tostring(usage)} end
end
a = a0
for i = 1, n do
  local id, nu = ARGV[a], tonumber(ARGV[a + 3])
  local seq = redis.call('INCR', KEYS[3])
  local doc = '{"seq":' .. seq .. ',' .. string.sub(ARGV[a + 1], 2)
  redis.call('HSET', KEYS[4 + i], 'doc', doc, 'ver', '1', 'seq', seq, 'uniq', ARGV[a + 2])
  for j = 1, nu do redis.call('HSET', KEYS[1], ARGV[a + 3 + j], id) end
  redis.call('ZADD', KEYS[2], seq, id)
  local hs = string.format('%016x', seq)
  local x = a + 3 + nu
  for j = 1, m do
    redis.call('ZADD', KEYS[4 + n + j], 0, ARGV[x + j] .. hs .. id)
    redis.call('HSET', KEYS[4 + i], 'ix:' .. ARGV[4 + j], ARGV[x + j])
  end
  a = x + m + 1
end
if ARGV[1] ~= '' then redis.call('HINCRBY', KEYS[4], ARGV[1], n) end
return {'OK'}
`)

// BulkCreate inserts many records of one tenant and kind, with the same
// checks, indexes and counters as that many Create calls, reserving one
// quota unit per record (when quota.Resource is set). The records go in
// chunks of 500, each one script (atomic: a taken id or unique key, or a
// full quota, writes none of the chunk), one chunk per round trip: a
// pipeline of several would have to be answered whole within the client's
// read timeout, and a chunk's script takes tens of milliseconds once the
// store (and its indexes) hold a million records.
// It serves loaders that fill a store no daemon is writing to (the
// benchmark's seeding).
func (s *Store) BulkCreate(ctx context.Context, recs []store.Record, quota store.Quota) error {
	if len(recs) == 0 {
		return nil
	}
	t, k := recs[0].Tenant, recs[0].Kind
	seen := make(map[string]bool, len(recs)*2)
	now := storekit.Now()
	type prepared struct {
		doc  string
		uniq []string
		data json.RawMessage
	}
	prep := make([]prepared, len(recs))
	for i := range recs {
		r := &recs[i]
		data, uniq, err := storekit.CheckRecord(r)
		if err != nil {
			return err
		}
		if r.Tenant != t || r.Kind != k {
			return storekit.Invalid("bulk create spans (%s, %s) and (%s, %s)", t, k, r.Tenant, r.Kind)
		}
		for _, key := range append([]string{"id:" + r.ID}, uniq...) {
			if seen[key] {
				return fmt.Errorf("%w: %s %s: %q twice in one bulk create", store.ErrExists, k, t, key)
			}
			seen[key] = true
		}
		d := docNoSeq{Kind: k, Tenant: t, ID: r.ID, Unique: uniq,
			Fields: r.Fields, Data: data, Version: 1, Created: now, Updated: now}
		doc, err := d.marshal()
		if err != nil {
			return err
		}
		prep[i] = prepared{doc: string(doc), uniq: uniq, data: data}
	}
	fields := s.ix.Fields(k)
	var errs []error
	for lo := 0; lo < len(recs); lo += bulkChunk {
		hi := min(lo+bulkChunk, len(recs))
		keys := []string{s.uniqKey(t, k), s.seqKey(t, k), s.ctrKey(t, k), s.quotaKey(t)}
		args := []any{quota.Resource, quota.Limit, hi - lo, len(fields)}
		for _, f := range fields {
			args = append(args, f)
		}
		for i := lo; i < hi; i++ {
			keys = append(keys, s.recKey(t, k, recs[i].ID))
			args = append(args, recs[i].ID, prep[i].doc, uniqJSON(prep[i].uniq), len(prep[i].uniq))
			for _, u := range prep[i].uniq {
				args = append(args, u)
			}
			for _, f := range fields {
				args = append(args, storekit.ValuePrefix(recs[i].Fields[f]))
			}
		}
		keys = s.ixKeys(keys, t, k, fields)
		reply, err := s.runScript(ctx, bulkScript, keys, args...)
		if err != nil {
			if !errors.Is(err, store.ErrUnavailable) && ctx.Err() == nil {
				errs = append(errs, err)
				continue
			}
			// The server is gone: the chunks before are written, the
			// rest are not tried.
			return errors.Join(append(errs, err)...)
		}
		switch replyCode(reply) {
		case "OK":
			for i := lo; i < hi; i++ {
				recs[i].Unique, recs[i].Data = prep[i].uniq, prep[i].data
				recs[i].Version, recs[i].Created, recs[i].Updated = 1, now, now
			}
		case "EXISTS":
			errs = append(errs, fmt.Errorf("%w: %s %s: %s taken", store.ErrExists, k, t, replyDetail(reply)))
		case "QUOTA":
			errs = append(errs, fmt.Errorf("%w: %s %s: %s used", store.ErrQuotaExceeded, t, quota.Resource, replyDetail(reply)))
		default:
			errs = append(errs, fmt.Errorf("redis store: unexpected bulk reply %v", reply))
		}
	}
	return errors.Join(slices.Clip(errs)...)
}
