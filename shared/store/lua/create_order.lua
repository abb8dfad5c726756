-- Accept an order atomically: idempotency check, back-pressure check, order state, its first event(s),
-- the event stream entries, and either its execution message (market) or its resting place (limit,
-- sniper: an entry in a sorted set, its index, its expiry) all land together or not at all.
-- A resting order also counts against its owner's resting cap (the count goes down in transition.lua, in
-- the step that ends the rest, so it never drifts).
-- The execution message is queued as dramatiq's own enqueue does (HSET msgs, RPUSH queue): a dramatiq
-- internal, fenced and tested in shared/execution/dramatiq_internals.py.
-- The slots below are named the same in CreateOrderArgs (shared/store/scripts.py): change both together.
-- KEYS: order, events, events stream, idempotency key, dramatiq queue, dramatiq msgs,
--       rest zset, rest index zset, expiries zset, resting count per owner (hash), doorbell (list),
--       second rest zset (an OCO's take-profit side, a trailing stop's activation; '-' = none)
-- ARGV: 1 use_idem, 2 idem_value, 3 idem_ttl_s, 4 max_queue_depth, 5 order_id, 6 user_id, 7 spec_json,
--       8 first_event_json, 9 message_id ('' = none), 10 message_data,
--       11 resting_event_json ('' = not resting), 12 rest_member, 13 rest_score, 14 index_member ('' = none),
--       15 index_score, 16 expiry_score ('' = none), 17 rest_owner ('' = not counted),
--       18 max_resting (0 = no cap, < 0 = none left: the owner's other partitions hold all of it),
--       19 ring ('' = never, 'always', 'earlier' = when its expiry is the new earliest),
--       20 second rest member ('' = none), 21 second rest score, then field/value pairs for the order hash
--       from 22
-- The doorbell wakes the resting book's housekeeping, which otherwise sleeps until its next deadline
-- (shared/store/doorbell.py); one element is enough to wake it.
-- First: a create retried after its reply was lost (a failover) finds its own order, whatever else changed.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'duplicate_id', ''} end
if ARGV[1] == '1' then
  local existing = redis.call('GET', KEYS[4])
  if existing then return {'exists', existing} end
end
local max_depth = tonumber(ARGV[4])
if ARGV[9] ~= '' and max_depth > 0 and redis.call('LLEN', KEYS[5]) >= max_depth then
  return {'busy', ''}
end
local counted = ARGV[11] ~= '' and ARGV[17] ~= ''
local max_resting = tonumber(ARGV[18])
if counted and max_resting ~= 0
    and (max_resting < 0 or tonumber(redis.call('HGET', KEYS[10], ARGV[17]) or '0') >= max_resting) then
  return {'too_many_resting', ''}
end
redis.call('HSET', KEYS[1], unpack(ARGV, 22))
redis.call('RPUSH', KEYS[2], ARGV[8])
redis.call('XADD', KEYS[3], '*', 'o', ARGV[5], 'u', ARGV[6], 'e', ARGV[8], 's', ARGV[7])
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[6], ARGV[9], ARGV[10])
  redis.call('RPUSH', KEYS[5], ARGV[9])
end
if ARGV[11] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[11])
  redis.call('XADD', KEYS[3], '*', 'o', ARGV[5], 'u', ARGV[6], 'e', ARGV[11])
  redis.call('ZADD', KEYS[7], ARGV[13], ARGV[12])
  if ARGV[14] ~= '' then redis.call('ZADD', KEYS[8], ARGV[15], ARGV[14]) end
  if ARGV[20] ~= '' then redis.call('ZADD', KEYS[12], ARGV[21], ARGV[20]) end
  local ring = ARGV[19] == 'always'
  if ARGV[16] ~= '' then
    if ARGV[19] == 'earlier' then
      local first = redis.call('ZRANGE', KEYS[9], 0, 0, 'WITHSCORES')
      ring = first[2] == nil or tonumber(ARGV[16]) < tonumber(first[2])
    end
    redis.call('ZADD', KEYS[9], ARGV[16], ARGV[5])
  end
  if ring then
    redis.call('LPUSH', KEYS[11], '1')
    redis.call('LTRIM', KEYS[11], 0, 0)
  end
  if counted then redis.call('HINCRBY', KEYS[10], ARGV[17], 1) end
end
if ARGV[1] == '1' then
  redis.call('SET', KEYS[4], ARGV[2], 'EX', ARGV[3])
end
return {'created', ''}
