-- Apply a batch of one pair's BEST ticks, in order, to its resting conditional orders: keep the record
-- stack (the ticks priced above every later tick), arm trailing stops whose activation price is reached, and
-- take every stop, take-profit and trailing stop a tick crosses into the hand-off set, as a member that says
-- why it fired: `<condition>|<trigger price>|<high-water mark or ''>|<rest member>`.
-- Design and proofs: docs/conditional-orders.md. One script, so replicas and restarts reading the same ticks
-- apply each tick once (ticks at or before the pair's lastId are skipped) and take each order once.
-- The slots below are named the same in TakeConditionalArgs (shared/store/scripts.py): change both together.
-- The caller names the trailing-stop set of every width the index held when it read it, and the widths: a
-- script touches only keys it was given (on a Redis Cluster, keys of one slot). If the index holds a width
-- the caller did not name (an order of a new width was placed in between), it changes nothing and returns -1:
-- read the widths again and retry. A width named but gone from the index (its last order ended) is harmless.
-- KEYS: 1 stops, 2 take-profits, 3 activations, 4 trail widths (index), 5 records by price (member = tick),
--       6 records by tick (member = price), 7 tick state (hash: lastId, seq), 8 hand-off set,
--       then the trailing stops of each width
-- ARGV: 1 now_ms, 2 widths (how many), then each width (in the index's order), then tick id, price pairs in
--       stream order
-- Returns the hand-off member of each order taken, in the order they fired.

-- A Lua number sent to Redis is formatted with 14 digits; a threshold needs all 17 to compare exactly.
local function exact(number) return string.format('%.17g', number) end

-- An order waits for prices from after it was placed: a tick is applied to an order only if the order's rest
-- member (`<createdAt µs>:<orderId>`) is older than the tick's stream id (its ms). That only ever matters when
-- a restarted worker replays ticks it missed, some from before orders placed while it was down.
local function placed_by(member, tick_us)
  return tonumber(string.sub(member, 1, 17)) <= tick_us
end

local function stream_id_after(id, last)
  if not last then return true end
  local ms, n = string.match(id, '^(%d+)-(%d+)$')
  local last_ms, last_n = string.match(last, '^(%d+)-(%d+)$')
  ms, n, last_ms, last_n = tonumber(ms), tonumber(n), tonumber(last_ms), tonumber(last_n)
  return ms > last_ms or (ms == last_ms and n > last_n)
end

-- WITHSCORES pairs sorted by score then member, rearranged highest score first, oldest member first.
local function highest_first(pairs)
  local ordered, i = {}, #pairs - 1
  while i >= 1 do
    local first = i
    while first - 2 >= 1 and pairs[first - 1] == pairs[i + 1] do first = first - 2 end
    for k = first, i, 2 do ordered[#ordered + 1] = pairs[k] end
    i = first - 2
  end
  return ordered
end

local tail = {unpack(ARGV, 3)}
local widths = tonumber(ARGV[2])
local trail = {}  -- width → its set's key
for i = 1, widths do trail[tail[i]] = KEYS[8 + i] end
for _, width in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  if not trail[width] then return -1 end
end

local taken = {}
local function take(member, condition, price, high)
  local handed = condition .. '|' .. price .. '|' .. high .. '|' .. member
  redis.call('ZADD', KEYS[8], ARGV[1], handed)
  taken[#taken + 1] = handed
end

local state = redis.call('HMGET', KEYS[7], 'lastId', 'seq')
local last_id, seq = state[1], tonumber(state[2] or '0')
local applied = false

for at = widths + 1, #tail, 2 do
  local id, price = tail[at], tail[at + 1]
  if stream_id_after(id, last_id) then
    last_id, seq, applied = id, seq + 1, true
    local p = tonumber(price)
    local tick_us = tonumber(string.match(id, '^(%d+)-')) * 1000 + 999  -- the whole of its millisecond

    -- The record stack: pop the records this tick matches or beats (the latest ones), push the tick.
    local beaten = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', price)
    if #beaten > 0 then
      local first_beaten = math.huge
      for _, tick in ipairs(beaten) do first_beaten = math.min(first_beaten, tonumber(tick)) end
      redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', price)
      redis.call('ZREMRANGEBYSCORE', KEYS[6], first_beaten, '+inf')
    end
    redis.call('ZADD', KEYS[5], price, seq)
    redis.call('ZADD', KEYS[6], seq, price)

    -- Stops (and OCO stop sides): BEST <= stopPrice, highest stop first. An OCO leaves its other side here.
    local stops = redis.call('ZRANGEBYSCORE', KEYS[1], price, '+inf', 'WITHSCORES')
    for _, member in ipairs(highest_first(stops)) do
      if placed_by(member, tick_us) then
        redis.call('ZREM', KEYS[1], member)
        redis.call('ZREM', KEYS[2], member)
        take(member, 'stop', price, '')
      end
    end

    -- OCO take-profit sides: BEST >= takeProfitPrice, lowest first.
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', price)) do
      if placed_by(member, tick_us) then
        redis.call('ZREM', KEYS[2], member)
        redis.call('ZREM', KEYS[1], member)
        take(member, 'take_profit', price, '')
      end
    end

    -- Arm the trailing stops this price activates: their tick is now, so their high is this price.
    for _, entry in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', price)) do
      local bps, member = string.match(entry, '^(%d+)/(.*)$')
      if placed_by(member, tick_us) then
        redis.call('ZREM', KEYS[3], entry)
        if trail[bps] then redis.call('ZADD', trail[bps], 'XX', seq, member) end
      end
    end

    -- Trailing stops: of width w, those armed at or before the latest record >= p / (1 - w) fire.
    -- Narrowest first: the threshold rises with the width, and past the highest record nothing fires.
    local top = redis.call('ZRANGE', KEYS[5], -1, -1, 'WITHSCORES')
    local highest = tonumber(top[2])
    for _, bps in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
      local threshold = p * 10000 / (10000 - tonumber(bps))
      if threshold > highest then break end
      local record = redis.call('ZRANGEBYSCORE', KEYS[5], exact(threshold), '+inf', 'LIMIT', 0, 1)[1]
      local key = trail[bps]
      local hit = redis.call('ZRANGEBYSCORE', key, '-inf', record, 'WITHSCORES')
      if #hit > 0 then
        redis.call('ZREMRANGEBYSCORE', key, '-inf', record)
        for i = 1, #hit, 2 do
          local high = redis.call('ZRANGEBYSCORE', KEYS[6], hit[i + 1], '+inf', 'LIMIT', 0, 1)[1]
          take(hit[i], 'trail', price, high)
        end
        if redis.call('ZCARD', key) == 0 then redis.call('ZREM', KEYS[4], bps) end
      end
    end
  end
end

if applied then
  redis.call('HSET', KEYS[7], 'lastId', last_id, 'seq', seq)
  -- Records before the oldest armed trailing stop cover nobody: keep the stack as short as the book needs.
  local oldest_armed = math.huge
  for _, bps in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
    local first = redis.call('ZRANGE', trail[bps], 0, 0, 'WITHSCORES')[2]
    if first and first ~= 'inf' and tonumber(first) < oldest_armed then oldest_armed = tonumber(first) end
  end
  local stale = redis.call('ZCOUNT', KEYS[6], '-inf', '(' .. exact(math.min(oldest_armed, seq)))
  if stale > 0 then
    redis.call('ZREMRANGEBYRANK', KEYS[6], 0, stale - 1)
    redis.call('ZREMRANGEBYRANK', KEYS[5], -stale, -1)
  end
end
return taken
