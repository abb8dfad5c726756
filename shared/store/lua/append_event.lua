-- Append one lifecycle event if, and only if, the order is still at the seq the writer last saw:
-- a compare-and-set that makes a stale or duplicate writer a no-op instead of a second event.
-- KEYS: order, events, events stream
-- ARGV: expected_seq, event_json, order_id, user_id, expire_s (0 = keep), then field/value pairs
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return -1 end
if seq ~= ARGV[1] then return tonumber(seq) end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], '*', 'o', ARGV[3], 'u', ARGV[4], 'e', ARGV[2])
local expire_s = tonumber(ARGV[5])
if expire_s > 0 then
  redis.call('EXPIRE', KEYS[1], expire_s)
  redis.call('EXPIRE', KEYS[2], expire_s)
end
return 0
