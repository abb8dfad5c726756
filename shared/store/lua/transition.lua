-- Append one or more consecutive lifecycle events if, and only if, the order is still at the seq the writer
-- last saw: a compare-and-set that makes a stale or duplicate writer a no-op instead of a second event.
-- Optionally, in the same step: claim the order from where it rests (a ZREM that must succeed, so a
-- cancel and a trigger racing for one resting order cannot both win), enqueue its execution message, and
-- release the writer's lease on the order (only if the writer still holds it).
-- The step that takes an order out of `waiting` (triggered, cancelled, expired, failed) also gives its owner's
-- resting slot back: tied to the status change, which the seq CAS lets happen once, never to a code path.
-- The execution message is queued as dramatiq's own enqueue does (HSET msgs, RPUSH queue): a dramatiq
-- internal, fenced and tested in shared/execution/dramatiq_internals.py.
-- The slots below are named the same in TransitionArgs (shared/store/scripts.py): change both together.
-- KEYS: order, events, events stream, rest zset, rest index zset, expiries zset, dramatiq queue, dramatiq msgs,
--       lease, resting count per owner (hash), second rest zset ('-' = none)
-- ARGV: 1 expected_seq, 2 order_id, 3 user_id, 4 expire_s (0 = keep), 5 rest_member ('' = no claim),
--       6 index_member, 7 message_id ('' = none), 8 message_data, 9 lease_token ('' = keep the lease),
--       10 fence_token ('' = no fence), 11 second rest member (removed with the claim; '' = none),
--       12 n (events), 13 .. 12+n event JSON in seq order, then field/value pairs for the order hash
local current = redis.call('HMGET', KEYS[1], 'seq', 'status', 'restOwner')
local seq, was_waiting, rest_owner = current[1], current[2] == 'waiting', current[3]
if not seq then return -1 end
if seq ~= ARGV[1] then return tonumber(seq) end
-- A fenced writer (an execution) writes only while it holds the order's lease: one cut off from Redis for
-- longer than the lease may come back to an order another execution now drives, still at the seq it last saw.
if ARGV[10] ~= '' and redis.call('GET', KEYS[9]) ~= ARGV[10] then return -3 end
if ARGV[5] ~= '' then
  if redis.call('ZREM', KEYS[4], ARGV[5]) == 0 then return -2 end
  if ARGV[6] ~= '' and redis.call('ZCARD', KEYS[4]) == 0 then redis.call('ZREM', KEYS[5], ARGV[6]) end
  redis.call('ZREM', KEYS[6], ARGV[2])
  if ARGV[11] ~= '' then redis.call('ZREM', KEYS[11], ARGV[11]) end
end
local n = tonumber(ARGV[12])
redis.call('HSET', KEYS[1], unpack(ARGV, 13 + n))
for i = 13, 12 + n do
  redis.call('RPUSH', KEYS[2], ARGV[i])
  redis.call('XADD', KEYS[3], '*', 'o', ARGV[2], 'u', ARGV[3], 'e', ARGV[i])
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[8], ARGV[7], ARGV[8])
  redis.call('RPUSH', KEYS[7], ARGV[7])
end
if was_waiting and rest_owner and rest_owner ~= '' and KEYS[10] ~= KEYS[1] and redis.call('HGET', KEYS[1], 'status') ~= 'waiting' then
  if redis.call('HINCRBY', KEYS[10], rest_owner, -1) <= 0 then redis.call('HDEL', KEYS[10], rest_owner) end
end
local expire_s = tonumber(ARGV[4])
if expire_s > 0 then
  redis.call('EXPIRE', KEYS[1], expire_s)
  redis.call('EXPIRE', KEYS[2], expire_s)
end
if ARGV[9] ~= '' and redis.call('GET', KEYS[9]) == ARGV[9] then redis.call('DEL', KEYS[9]) end
return 0
