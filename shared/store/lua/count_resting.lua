-- Count the resting limit orders of each pair: the sizes of its buckets, summed (read only; for /metrics).
-- KEYS: each pair's bucket index   ARGV: each pair's bucket key prefix, in the same order
local counts = {}
for i, index in ipairs(KEYS) do
  local total = 0
  for _, bucket in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    total = total + redis.call('ZCARD', ARGV[i] .. bucket)
  end
  counts[i] = total
end
return counts
