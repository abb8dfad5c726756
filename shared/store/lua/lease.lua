-- Take, renew or release an order's lease. A lease is held by one token; only its holder renews or
-- releases it, so a worker that lost its lease (expired, taken over) can never extend someone else's.
-- KEYS: lease   ARGV: op ('take'|'renew'|'release'), token, ttl_ms
local op = ARGV[1]
if op == 'take' then
  if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
  if redis.call('GET', KEYS[1]) == ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return 1
  end
  return 0
end
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
if op == 'renew' then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return redis.call('DEL', KEYS[1])
