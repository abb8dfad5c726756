-- Take every member of one trigger set scored at or below a level (all of them with '+inf') into the
-- hand-off set, oldest/lowest first, and drop the set from the index of non-empty sets once empty.
-- One script, so sniper workers racing on the same event take each order once.
-- The slots below are named the same in TakeRangeArgs (shared/store/scripts.py): change both together.
-- KEYS: trigger set, hand-off set, index of non-empty trigger sets   ARGV: max score, now_ms
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, member in ipairs(members) do
  redis.call('ZADD', KEYS[2], ARGV[2], member)
end
if #members > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1]) end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[3], KEYS[1]) end
return members
