-- Take, renew or release an order's lease. Renew and release act only for the holder of its token, so a
-- worker whose lease expired (and was taken by another) can never extend or drop someone else's. Take also
-- returns the order's hash, read after the lease was taken, so the taker starts from what no one can change.
-- A take sent again with the same token (its reply was lost) finds the lease its own, and takes it.
-- The slots below are named the same in LeaseArgs (shared/store/scripts.py): change both together.
-- KEYS: lease, order ('-' unless taking)   ARGV: op ('take'|'renew'|'release'), token, ttl_ms
if ARGV[1] == 'take' then
  local taken = redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3])
  if not taken and redis.call('GET', KEYS[1]) == ARGV[2] then taken = redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
  return {taken and 1 or 0, redis.call('HGETALL', KEYS[2])}
end
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
if ARGV[1] == 'renew' then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return redis.call('DEL', KEYS[1])
