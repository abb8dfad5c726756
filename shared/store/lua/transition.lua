-- Append one lifecycle event if, and only if, the order is still at the seq the writer last saw: a
-- compare-and-set that makes a stale or duplicate writer a no-op instead of a second event.
-- Optionally, in the same step: claim the order from where it rests (a ZREM that must succeed, so a
-- cancel and a trigger racing for one resting order cannot both win), and enqueue its execution message.
-- KEYS: order, events, events stream, rest zset, rest index zset, expiries zset, dramatiq queue, dramatiq msgs
-- ARGV: expected_seq, event_json, order_id, user_id, expire_s (0 = keep),
--       rest_member ('' = no claim), index_member, message_id ('' = none), message_data, then field/value pairs
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return -1 end
if seq ~= ARGV[1] then return tonumber(seq) end
if ARGV[6] ~= '' then
  if redis.call('ZREM', KEYS[4], ARGV[6]) == 0 then return -2 end
  if ARGV[7] ~= '' and redis.call('ZCARD', KEYS[4]) == 0 then redis.call('ZREM', KEYS[5], ARGV[7]) end
  redis.call('ZREM', KEYS[6], ARGV[3])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 10))
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], '*', 'o', ARGV[3], 'u', ARGV[4], 'e', ARGV[2])
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[8], ARGV[8], ARGV[9])
  redis.call('RPUSH', KEYS[7], ARGV[8])
end
local expire_s = tonumber(ARGV[5])
if expire_s > 0 then
  redis.call('EXPIRE', KEYS[1], expire_s)
  redis.call('EXPIRE', KEYS[2], expire_s)
end
return 0
