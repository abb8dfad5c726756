-- Take every resting limit order a price crosses (limit <= price), best price first then oldest, out of
-- its bucket and into the hand-off set, and drop buckets left empty from the index. One script, so two
-- limit workers racing on the same tick can never take the same order twice.
-- The slots below are named the same in TakeCrossedArgs (shared/store/scripts.py): change both together.
-- KEYS: bucket index, hand-off set   ARGV: bucket key prefix, price, now_ms
local taken = {}
local buckets = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
for _, bucket in ipairs(buckets) do
  local key = ARGV[1] .. bucket
  local members = redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[2])
  for _, member in ipairs(members) do
    taken[#taken + 1] = member
    redis.call('ZADD', KEYS[2], ARGV[3], member)
  end
  if #members > 0 then redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[2]) end
  if redis.call('ZCARD', key) == 0 then redis.call('ZREM', KEYS[1], bucket) end
end
return taken
