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
// quota limit, intent id or "", unique keys...
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return {'EXISTS', 'id'} end
for i = 7, #ARGV do
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
for i = 7, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], ARGV[1]) end
redis.call('ZADD', KEYS[3], seq, ARGV[1])
if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[5], ARGV[4], 1) end
if ARGV[6] ~= '' then redis.call('HDEL', KEYS[6], ARGV[6]) end
return {'OK', seq}
`)

// updateScript
// KEYS: rec, uniq index, intents
// ARGV: id, expected version, expected seq, new doc, new uniq JSON,
// intent id or "", new unique keys...
//
// The seq check catches a record deleted and created again under the same
// id between the caller's read and this script: the new incarnation has
// another seq, and the doc built from the old one must not replace it.
var updateScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'ver', 'seq', 'uniq')
if not cur[1] then return {'NOTFOUND'} end
if cur[1] ~= ARGV[2] or cur[2] ~= ARGV[3] then return {'CONFLICT', cur[1]} end
for i = 7, #ARGV do
  local owner = redis.call('HGET', KEYS[2], ARGV[i])
  if owner and owner ~= ARGV[1] then return {'EXISTS', ARGV[i]} end
end
for _, k in ipairs(cjson.decode(cur[3])) do
  if redis.call('HGET', KEYS[2], k) == ARGV[1] then redis.call('HDEL', KEYS[2], k) end
end
for i = 7, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], ARGV[1]) end
redis.call('HSET', KEYS[1], 'doc', ARGV[4], 'ver', tostring(tonumber(ARGV[2]) + 1), 'uniq', ARGV[5])
if ARGV[6] ~= '' then redis.call('HDEL', KEYS[3], ARGV[6]) end
return {'OK'}
`)

// deleteScript
// KEYS: rec, uniq index, seq index, quota, intents
// ARGV: id, quota resource or "", intent id or ""
var deleteScript = redis.NewScript(`
local uniq = redis.call('HGET', KEYS[1], 'uniq')
if not uniq then return {'NOTFOUND'} end
for _, k in ipairs(cjson.decode(uniq)) do
  if redis.call('HGET', KEYS[2], k) == ARGV[1] then redis.call('HDEL', KEYS[2], k) end
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
