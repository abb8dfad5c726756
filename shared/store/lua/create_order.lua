-- Accept an order atomically: idempotency check, back-pressure check, order state, first event, the
-- event stream entry and the execution message all land together or not at all.
-- KEYS: order, events, events stream, idempotency key, dramatiq queue, dramatiq messages
-- ARGV: use_idem, idem_value, idem_ttl_s, max_queue_depth, order_id, user_id, spec_json, event_json,
--       message_id ('' = no execution message), message_data, then field/value pairs for the order hash
if ARGV[1] == '1' then
  local existing = redis.call('GET', KEYS[4])
  if existing then return {'exists', existing} end
end
local max_depth = tonumber(ARGV[4])
if ARGV[9] ~= '' and max_depth > 0 and redis.call('LLEN', KEYS[5]) >= max_depth then
  return {'busy', ''}
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'duplicate_id', ''} end
redis.call('HSET', KEYS[1], unpack(ARGV, 11))
redis.call('RPUSH', KEYS[2], ARGV[8])
redis.call('XADD', KEYS[3], '*', 'o', ARGV[5], 'u', ARGV[6], 'e', ARGV[8], 's', ARGV[7])
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[6], ARGV[9], ARGV[10])
  redis.call('RPUSH', KEYS[5], ARGV[9])
end
if ARGV[1] == '1' then
  redis.call('SET', KEYS[4], ARGV[2], 'EX', ARGV[3])
end
return {'created', ''}
