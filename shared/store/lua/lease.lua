-- Renew or release an order's lease, but only for the holder of its token, so a worker whose lease
-- expired (and was taken by another) can never extend or drop someone else's.
-- KEYS: lease   ARGV: op ('renew'|'release'), token, ttl_ms
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
if ARGV[1] == 'renew' then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return redis.call('DEL', KEYS[1])
