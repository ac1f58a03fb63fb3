package redisstore

import "github.com/redis/go-redis/v9"

// Each write is one script, so the checks and the writes they guard are a
// single atomic step on the server. Every key a script touches is passed in
// KEYS and carries the tenant's hash tag, so the scripts also run on a
// cluster. Replies are {code, detail...}; code "OK" means written.
//
// A record is a hash: doc (the Record JSON Get returns), ver and seq (for
// the compare-and-set without decoding doc) and uniq (a JSON array of the
// record's unique keys, so that update and delete can release them).

// createScript
// KEYS: rec, uniq index, seq index, seq counter, quota, intents
// ARGV: id, doc without seq (JSON object), uniq JSON, quota resource or "",
// quota limit, intent id or "", index key base (P:{T}:ix:K:), number of
// index entries n, n pairs (field, value prefix), unique keys...
var createScript = redis.NewScript(`
local u0 = 9 + 2 * tonumber(ARGV[8])
if redis.call('EXISTS', KEYS[1]) == 1 then return {'EXISTS', 'id'} end
for i = u0, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then return {'EXISTS', ARGV[i]} end
end
local usage = 0
if ARGV[4] ~= '' then
  usage = tonumber(redis.call('HGET', KEYS[5], ARGV[4]) or '0')
  local limit = tonumber(ARGV[5])
  if limit >= 0 and usage + 1 > limit then return {'QUOTA', tostring(usage)} end
end
local seq = redis.call('INCR', KEYS[4])
local doc = '{"seq":' .. seq .. ',' .. string.sub(ARGV[2], 2)
redis.call('HSET', KEYS[1], 'doc', doc, 'ver', '1', 'seq', seq, 'uniq', ARGV[3])
for i = u0, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], ARGV[1]) end
redis.call('ZADD', KEYS[3], seq, ARGV[1])
local hs = string.format('%016x', seq)
for i = 9, u0 - 1, 2 do
  redis.call('ZADD', ARGV[7] .. ARGV[i], 0, ARGV[i + 1] .. hs .. ARGV[1])
  redis.call('HSET', KEYS[1], 'ix:' .. ARGV[i], ARGV[i + 1])
end
if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[5], ARGV[4], 1) end
if ARGV[6] ~= '' then redis.call('HDEL', KEYS[6], ARGV[6]) end
return {'OK', seq}
`)

// updateScript
// KEYS: rec, uniq index, intents
// ARGV: id, expected version, expected seq, new doc, new uniq JSON,
// intent id or "", index key base, number of index entries n, n pairs
// (field, value prefix), new unique keys...
//
// The seq check catches a record deleted and created again under the same
// id between the caller's read and this script: the new incarnation has
// another seq, and the doc built from the old one must not replace it.
var updateScript = redis.NewScript(`
local u0 = 9 + 2 * tonumber(ARGV[8])
local cur = redis.call('HMGET', KEYS[1], 'ver', 'seq', 'uniq')
if not cur[1] then return {'NOTFOUND'} end
if cur[1] ~= ARGV[2] or cur[2] ~= ARGV[3] then return {'CONFLICT', cur[1]} end
for i = u0, #ARGV do
  local owner = redis.call('HGET', KEYS[2], ARGV[i])
  if owner and owner ~= ARGV[1] then return {'EXISTS', ARGV[i]} end
end
for _, k in ipairs(cjson.decode(cur[3])) do
  if redis.call('HGET', KEYS[2], k) == ARGV[1] then redis.call('HDEL', KEYS[2], k) end
end
for i = u0, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], ARGV[1]) end
local hs = string.format('%016x', tonumber(cur[2]))
local want = {}
for i = 9, u0 - 1, 2 do want[ARGV[i]] = ARGV[i + 1] end
local keys = redis.call('HKEYS', KEYS[1])
for _, hk in ipairs(keys) do
  if string.sub(hk, 1, 3) == 'ix:' then
    local f = string.sub(hk, 4)
    local p = redis.call('HGET', KEYS[1], hk)
    if want[f] == p then
      want[f] = nil
    else
      redis.call('ZREM', ARGV[7] .. f, p .. hs .. ARGV[1])
      redis.call('HDEL', KEYS[1], hk)
    end
  end
end
for f, p in pairs(want) do
  redis.call('ZADD', ARGV[7] .. f, 0, p .. hs .. ARGV[1])
  redis.call('HSET', KEYS[1], 'ix:' .. f, p)
end
redis.call('HSET', KEYS[1], 'doc', ARGV[4], 'ver', tostring(tonumber(ARGV[2]) + 1), 'uniq', ARGV[5])
if ARGV[6] ~= '' then redis.call('HDEL', KEYS[3], ARGV[6]) end
return {'OK'}
`)

// deleteScript
// KEYS: rec, uniq index, seq index, quota, intents
// ARGV: id, quota resource or "", intent id or "", index key base
var deleteScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'uniq', 'seq')
if not cur[1] then return {'NOTFOUND'} end
for _, k in ipairs(cjson.decode(cur[1])) do
  if redis.call('HGET', KEYS[2], k) == ARGV[1] then redis.call('HDEL', KEYS[2], k) end
end
local hs = string.format('%016x', tonumber(cur[2]))
for _, hk in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(hk, 1, 3) == 'ix:' then
    redis.call('ZREM', ARGV[4] .. string.sub(hk, 4), redis.call('HGET', KEYS[1], hk) .. hs .. ARGV[1])
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
// KEYS: rec keys
// ARGV: index key base, then per record: id, version, number of pairs n,
// n pairs (field, value prefix)
// Reply: the 1-based positions of records that changed version.
var backfillScript = redis.NewScript(`
local a, changed = 2, {}
for i = 1, #KEYS do
  local id, n = ARGV[a], tonumber(ARGV[a + 2])
  local cur = redis.call('HMGET', KEYS[i], 'ver', 'seq')
  if cur[1] and cur[1] ~= ARGV[a + 1] then
    table.insert(changed, i)
  elseif cur[1] then
    local hs = string.format('%016x', tonumber(cur[2]))
    for j = a + 3, a + 1 + 2 * n, 2 do
      if redis.call('HEXISTS', KEYS[i], 'ix:' .. ARGV[j]) == 0 then
        redis.call('ZADD', ARGV[1] .. ARGV[j], 0, ARGV[j + 1] .. hs .. id)
        redis.call('HSET', KEYS[i], 'ix:' .. ARGV[j], ARGV[j + 1])
      end
    end
  end
  a = a + 3 + 2 * n
end
return changed
`)

// reserveScript
// KEYS: quota; ARGV: resource, n, limit (negative: none)
var reserveScript = redis.NewScript(`
local usage = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local n, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
if limit >= 0 and usage + n > limit then return {'QUOTA', tostring(usage)} end
redis.call('HINCRBY', KEYS[1], ARGV[1], n)
return {'OK'}
`)

// releaseScript
// KEYS: quota; ARGV: resource, n
var releaseScript = redis.NewScript(`
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
var throttleScript = redis.NewScript(`
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
// one round trip; nil when there is none.
// KEYS: uniq index; ARGV: unique key, rec key prefix (P:{T}:rec:K:)
// The record key is built here from the id; it carries the tenant's hash
// tag, so it lives in the slot of KEYS[1].
var getByUniqueScript = redis.NewScript(`
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return false end
return redis.call('HGET', ARGV[2] .. id, 'doc')
`)
