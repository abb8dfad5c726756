-- Take every resting limit order a price crosses (limit <= price), best price first then oldest, out of
-- its bucket and into the hand-off set, and drop buckets left empty from the index. One script, so two
-- limit workers racing on the same tick can never take the same order twice.
-- The caller names the buckets, as the index listed those at or below the price just before: a script
-- touches only keys it was given (on a Redis Cluster, keys of one slot). A bucket the read missed (one placed
-- in between) waits for the next tick, as if it had been placed after this one.
-- The slots below are named the same in TakeCrossedArgs (shared/store/scripts.py): change both together.
-- KEYS: bucket index, hand-off set, then each bucket to take from
-- ARGV: 1 price, 2 now_ms, then each bucket's number, in the same order as its key
local numbers = {unpack(ARGV, 3)}
local taken = {}
for i, bucket in ipairs(numbers) do
  local key = KEYS[i + 2]
  local members = redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[1])
  for _, member in ipairs(members) do
    taken[#taken + 1] = member
    redis.call('ZADD', KEYS[2], ARGV[2], member)
  end
  if #members > 0 then redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1]) end
  if redis.call('ZCARD', key) == 0 then redis.call('ZREM', KEYS[1], bucket) end
end
return taken
