package redisstore

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Each write is one script, so the checks and the writes they guard are a
// single atomic step on the server. Every key a script touches is passed in
// KEYS and carries the tenant's hash tag: on a cluster a script runs on the
// tenant's master, and while a slot migrates the server decides from KEYS
// whether to run it, redirect it (ASK) or refuse it (TRYAGAIN) before it
// writes anything. Replies are {code, detail...}; code "OK" means written.
// The one exception, credential guards (a token's record and rate-limit
// key in a write of another tenant: store.CredentialGuards), is taken
// only where there are no slots: a standalone server or Sentinel.
//
// A record is a hash: doc (the Record JSON Get returns), ver and seq (for
// the compare-and-set without decoding doc), uniq (a JSON array of the
// record's unique keys, so that update and delete can release them) and
// ix:<field> -> the value prefix of its entry in each index it is in.

// script is a Lua script sent by its hash, or by its source when the
// server lacks it.
type script struct {
	*redis.Script
	src string
}

func newScript(src string) *script { return &script{Script: redis.NewScript(src), src: src} }

// cmd is the EVALSHA (byHash) or EVAL command of one call.
func (sc *script) cmd(ctx context.Context, byHash bool, keys []string, args []any) *redis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	if byHash {
		a = append(a, "evalsha", sc.Hash())
	} else {
		a = append(a, "eval", sc.src)
	}
	a = append(a, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	c := redis.NewCmd(ctx, append(a, args...)...)
	if len(keys) > 0 {
		c.SetFirstKeyPos(3)
	}
	return c
}

// createScript
// KEYS: rec, uniq index, seq index, seq counter, quota, intents, then the
// index key of each of the n index entries
// ARGV: id, doc without seq (JSON object), uniq JSON, quota resource or "",
// quota limit, intent id or "", n, n pairs (field, value prefix), unique
// keys...
var createScript = newScript(createFn + `return create(KEYS, ARGV)`)

// createFn is the body of createScript as a function of its KEYS (K) and
// ARGV (A), for the scripts that do more around it.
const createFn = `
local function create(K, A)
local n = tonumber(A[7])
local u0 = 8 + 2 * n
if redis.call('EXISTS', K[1]) == 1 then return {'EXISTS', 'id'} end
for i = u0, #A do
  if redis.call('HEXISTS', K[2], A[i]) == 1 then return {'EXISTS', A[i]} end
end
local usage = 0
if A[4] ~= '' then
  usage = tonumber(redis.call('HGET', K[5], A[4]) or '0')
  local limit = tonumber(A[5])
  if limit >= 0 and usage + 1 > limit then return {'QUOTA', tostring(usage)} end
end
local seq = redis.call('INCR', K[4])
local doc = '{"seq":' .. seq .. ',' .. string.sub(A[2], 2)
local hs = string.format('%016x', seq)
local fv = {'doc', doc, 'ver', '1', 'seq', seq, 'uniq', A[3]}
for j = 1, n do
  local f, p = A[6 + 2 * j], A[7 + 2 * j]
  redis.call('ZADD', K[6 + j], 0, p .. hs .. A[1])
  fv[#fv + 1] = 'ix:' .. f
  fv[#fv + 1] = p
end
redis.call('HSET', K[1], unpack(fv))
for i = u0, #A do redis.call('HSET', K[2], A[i], A[1]) end
redis.call('ZADD', K[3], seq, A[1])
if A[4] ~= '' then redis.call('HINCRBY', K[5], A[4], 1) end
if A[6] ~= '' then redis.call('HDEL', K[6], A[6]) end
return {'OK', seq}
end
`

// guardFn checks a write's guards (store.Guard and its chain, And), one
// call of holds per guard: the record at rk must be at version ver, and
// when interval (microseconds) is over 0 the rate limit at lk must admit
// the request (counted as throttleScript does, on the server's clock,
// in tats until counted writes them: the caller calls it with its write,
// so that a write not made counts nothing).
const guardFn = `
local tats, now = {}, nil
local function holds(rk, lk, ver, interval, burst)
  if redis.call('HGET', rk, 'ver') ~= ver then return false end
  interval = tonumber(interval)
  if interval <= 0 then return true end
  if not now then
    if redis.replicate_commands then redis.replicate_commands() end
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  local tat = tats[lk] or tonumber(redis.call('GET', lk) or '0')
  if tat < now then tat = now end
  local nxt = tat + interval
  if nxt - tonumber(burst) * interval > now then return false end
  tats[lk] = nxt
  return true
end
local function counted()
  for k, nxt in pairs(tats) do
    redis.call('SET', k, string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1000)
  end
end
`

// createGuardedScript is createScript under guards (store.Guard and its
// chain): each guard's record must be at a version and its rate limit,
// if any, admit the request, else nothing is written (GUARD).
// KEYS: each guard's record and rate-limit key, then createScript's KEYS
// ARGV: the number of guards n, n (version, interval, burst) triples,
// then createScript's ARGV
// Answers GUARD when a guard fails, else as createScript.
var createGuardedScript = newScript(createFn + guardFn + `
local n = tonumber(ARGV[1])
for g = 1, n do
  if not holds(KEYS[2 * g - 1], KEYS[2 * g], ARGV[3 * g - 1], ARGV[3 * g], ARGV[3 * g + 1]) then return {'GUARD'} end
end
local K, A = {}, {}
for i = 2 * n + 1, #KEYS do K[#K + 1] = KEYS[i] end
for i = 3 * n + 2, #ARGV do A[#A + 1] = ARGV[i] end
local r = create(K, A)
if r[1] == 'OK' then counted() end
return r
`)

// checkGuardScript checks guards alone (store.CredentialGuards'
// CheckGuard): 1 when each guard's record is at its version and its rate
// limit, if any, admits the request (counted then), else 0 and nothing
// counted.
// KEYS: each guard's record and rate-limit key
// ARGV: the number of guards n, then n (version, interval, burst) triples
var checkGuardScript = newScript(guardFn + `
local n = tonumber(ARGV[1])
for g = 1, n do
  if not holds(KEYS[2 * g - 1], KEYS[2 * g], ARGV[3 * g - 1], ARGV[3 * g], ARGV[3 * g + 1]) then return 0 end
end
counted()
return 1
`)

// createEventScript is createScript (under guards or not) with an event
// appended to the tenant's chain in the same step
// (store.EventsWithCreate): nothing is written unless the chain's head is
// still the one the event was linked to (else STALE with the stored
// head), the guards hold (else GUARD) and the create goes through (else
// its refusal).
// KEYS: head, events, each guard's record and rate-limit key, then
// createScript's KEYS
// ARGV: the expected head, the new head, the event's seq, its JSON, the
// number of guards n, n (version, interval, burst) triples, then
// createScript's ARGV
var createEventScript = newScript(createFn + guardFn + `
local h = redis.call('GET', KEYS[1]) or ''
if h ~= ARGV[1] then return {'STALE', h} end
local n = tonumber(ARGV[5])
for g = 1, n do
  if not holds(KEYS[1 + 2 * g], KEYS[2 + 2 * g], ARGV[3 + 3 * g], ARGV[4 + 3 * g], ARGV[5 + 3 * g]) then return {'GUARD'} end
end
local K, A = {}, {}
for i = 3 + 2 * n, #KEYS do K[#K + 1] = KEYS[i] end
for i = 6 + 3 * n, #ARGV do A[#A + 1] = ARGV[i] end
local r = create(K, A)
if r[1] ~= 'OK' then return r end
counted()
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('SET', KEYS[1], ARGV[2])
return r
`)

// fieldsCheck is the prologue of the scripts that rewrite or remove a
// record's index entries: the record names its entries (ix:<field>), and
// each entry's index key must be among KEYS. ixkey maps the fields of the
// call (ARGV[m0 + 1 .. m0 + m]) to their keys (KEYS[k0 + 1 ..]); a field
// the record has and the call did not declare (written by a replica that
// declares more indexes, or since the caller read) is answered with
// {'FIELDS', field...} before anything is written, and the caller sends
// the call again with them.
const fieldsCheck = `
local function ixkeys(k0, m0)
  local m, ixkey = tonumber(ARGV[m0]), {}
  for j = 1, m do ixkey[ARGV[m0 + j]] = KEYS[k0 + j] end
  local missing = {}
  for _, hk in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(hk, 1, 3) == 'ix:' and not ixkey[string.sub(hk, 4)] then
      table.insert(missing, string.sub(hk, 4))
    end
  end
  return ixkey, m, missing
end
`

// updateScript
// KEYS: rec, uniq index, intents, then the index key of each of the m
// fields
// ARGV: id, expected version, expected seq, new doc, new uniq JSON,
// intent id or "", m, m fields, n, n pairs (field, value prefix) of the
// new entries (their fields among the m), new unique keys...
//
// The seq check catches a record deleted and created again under the same
// id between the caller's read and this script: the new incarnation has
// another seq, and the doc built from the old one must not replace it.
var updateScript = newScript(fieldsCheck + `
local cur = redis.call('HMGET', KEYS[1], 'ver', 'seq', 'uniq')
if not cur[1] then return {'NOTFOUND'} end
if cur[1] ~= ARGV[2] or cur[2] ~= ARGV[3] then return {'CONFLICT', cur[1]} end
local ixkey, m, missing = ixkeys(3, 7)
local n = tonumber(ARGV[8 + m])
local p0 = 9 + m
local u0 = p0 + 2 * n
for i = u0, #ARGV do
  local owner = redis.call('HGET', KEYS[2], ARGV[i])
  if owner and owner ~= ARGV[1] then return {'EXISTS', ARGV[i]} end
end
if #missing > 0 then return {'FIELDS', unpack(missing)} end
for _, k in ipairs(cjson.decode(cur[3])) do
  if redis.call('HGET', KEYS[2], k) == ARGV[1] then redis.call('HDEL', KEYS[2], k) end
end
for i = u0, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], ARGV[1]) end
local hs = string.format('%016x', tonumber(cur[2]))
local want = {}
for i = p0, u0 - 1, 2 do want[ARGV[i]] = ARGV[i + 1] end
for _, hk in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(hk, 1, 3) == 'ix:' then
    local f = string.sub(hk, 4)
    local p = redis.call('HGET', KEYS[1], hk)
    if want[f] == p then
      want[f] = nil
    else
      redis.call('ZREM', ixkey[f], p .. hs .. ARGV[1])
      redis.call('HDEL', KEYS[1], hk)
    end
  end
end
for f, p in pairs(want) do
  redis.call('ZADD', ixkey[f], 0, p .. hs .. ARGV[1])
  redis.call('HSET', KEYS[1], 'ix:' .. f, p)
end
redis.call('HSET', KEYS[1], 'doc', ARGV[4], 'ver', tostring(tonumber(ARGV[2]) + 1), 'uniq', ARGV[5])
if ARGV[6] ~= '' then redis.call('HDEL', KEYS[3], ARGV[6]) end
return {'OK'}
`)

// deleteScript
// KEYS: rec, uniq index, seq index, quota, intents, then the index key of
// each of the m fields
// ARGV: id, quota resource or "", intent id or "", m, m fields
var deleteScript = newScript(fieldsCheck + `
local cur = redis.call('HMGET', KEYS[1], 'uniq', 'seq')
if not cur[1] then return {'NOTFOUND'} end
local ixkey, m, missing = ixkeys(5, 4)
if #missing > 0 then return {'FIELDS', unpack(missing)} end
for _, k in ipairs(cjson.decode(cur[1])) do
  if redis.call('HGET', KEYS[2], k) == ARGV[1] then redis.call('HDEL', KEYS[2], k) end
end
local hs = string.format('%016x', tonumber(cur[2]))
for _, hk in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(hk, 1, 3) == 'ix:' then
    redis.call('ZREM', ixkey[string.sub(hk, 4)], redis.call('HGET', KEYS[1], hk) .. hs .. ARGV[1])
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[2] ~= '' then
  local n = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0')
  if n > 0 then redis.call('HSET', KEYS[4], ARGV[2], tostring(n - 1)) end
end
if ARGV[3] ~= '' then redis.call('HDEL', KEYS[5], ARGV[3]) end
return {'OK'}
`)

// backfillScript adds the index entries of records written without them,
// each only if the record is still at the version they were computed
// from and has no entry of that field yet (a write since has made its
// own), so it is idempotent and safe beside writers and other replicas
// doing the same.
// KEYS: the r rec keys, then the index key of each of the m fields
// ARGV: r, m, m fields, then per record: id, version, m value prefixes
// Reply: OK, then the 1-based positions of records that changed version.
var backfillScript = newScript(`
local r, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local a, changed = 3 + m, {}
for i = 1, r do
  local id = ARGV[a]
  local cur = redis.call('HMGET', KEYS[i], 'ver', 'seq')
  if cur[1] and cur[1] ~= ARGV[a + 1] then
    table.insert(changed, i)
  elseif cur[1] then
    local hs = string.format('%016x', tonumber(cur[2]))
    for j = 1, m do
      local f, p = ARGV[2 + j], ARGV[a + 1 + j]
      if redis.call('HEXISTS', KEYS[i], 'ix:' .. f) == 0 then
        redis.call('ZADD', KEYS[r + j], 0, p .. hs .. id)
        redis.call('HSET', KEYS[i], 'ix:' .. f, p)
      end
    end
  end
  a = a + 2 + m
end
return {'OK', unpack(changed)}
`)

// reserveScript
// KEYS: quota; ARGV: resource, n, limit (negative: none)
var reserveScript = newScript(`
local usage = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local n, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
if limit >= 0 and usage + n > limit then return {'QUOTA', tostring(usage)} end
redis.call('HINCRBY', KEYS[1], ARGV[1], n)
return {'OK'}
`)

// releaseScript
// KEYS: quota; ARGV: resource, n
var releaseScript = newScript(`
local usage = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local left = usage - tonumber(ARGV[2])
if left < 0 then left = 0 end
if left ~= usage then redis.call('HSET', KEYS[1], ARGV[1], tostring(left)) end
return {'OK'}
`)

// throttleScript is a generic cell rate limiter shared by every replica.
// The key holds the theoretical arrival time (TAT, microseconds on the
// server's clock, so that replicas' clocks do not matter) of the next
// request; a request is admitted while the TAT is at most burst intervals
// ahead, and pushes it one interval later. The key expires once its TAT
// has passed, when it would be the same as absent.
// KEYS: the limiter key
// ARGV: interval (microseconds), burst
// Reply: 0 when admitted, else microseconds until a request would be.
var throttleScript = newScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local nxt = tat + interval
local allow_at = nxt - burst * interval
if allow_at > now then return math.ceil(allow_at - now) end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1000)
return 0
`)

// getByUniqueScript reads the doc of the record holding a unique key in
// one round trip; nil when there is none, {id} when the key names a record
// this node does not have. A read: it writes nothing.
// KEYS: uniq index; ARGV: unique key, rec key prefix (P:{T}:rec:K:)
// The record key is built here from the id, so it cannot be in KEYS; it
// carries the tenant's hash tag and lives in the slot of KEYS[1]. While
// that slot migrates the record may be on the other node: on the target
// it reads as absent (hence {id}, and GetByUnique asks for the record by
// its key), on the source the server refuses the script ("non local key")
// and GetByUnique reads in two steps.
var getByUniqueScript = newScript(`
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return false end
local doc = redis.call('HGET', ARGV[2] .. id, 'doc')
if not doc then return {id} end
return doc
`)

// appendEventsIfScript is appendEventsScript with guards: each names a
// record that must exist at a version for the append to go ahead, and
// may count a request against a rate limit (a request's credential,
// store.Guard.Throttle), as throttleScript does, on the server's clock;
// a request over its limit fails its guard. The counts are written only
// with the append: when a guard fails nothing is written.
// KEYS: head, events, then each guard's record and rate-limit key (its
// record key again when it counts none)
// ARGV: the expected head, the new head, the number of guards n, then n
// (event position, version, interval in microseconds or 0, burst)
// quadruples, then (seq, event JSON) pairs
// Answers OK, STALE with the stored head, or GUARD with the positions of
// the events whose guards failed (nothing written).
var appendEventsIfScript = newScript(guardFn + `
local h = redis.call('GET', KEYS[1]) or ''
if h ~= ARGV[1] then return {'STALE', h} end
local n = tonumber(ARGV[3])
local failed = {'GUARD'}
for g = 1, n do
  local a = 4 * g
  if not holds(KEYS[1 + 2 * g], KEYS[2 + 2 * g], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]) then
    failed[#failed + 1] = ARGV[a]
  end
end
if #failed > 1 then return failed end
counted()
for i = 4 + 4 * n, #ARGV, 2 do redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[1], ARGV[2])
return {'OK'}
`)

// appendEventsScript appends linked events to a tenant's chain if its
// head is still the one they were linked to.
// KEYS: head, events
// ARGV: the expected head ("" for none), the new head, then (seq, event
// JSON) pairs
var appendEventsScript = newScript(`
local h = redis.call('GET', KEYS[1]) or ''
if h ~= ARGV[1] then return {'STALE', h} end
for i = 3, #ARGV, 2 do redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[1], ARGV[2])
return {'OK'}
`)
