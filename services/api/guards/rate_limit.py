"""Requests per second per client, counted in Redis so that every API replica draws on one allowance.

The `limits` library's sliding-window counter (one Lua call per request, on the API's own Redis pool):
`RATE_LIMIT_PER_S × RATE_LIMIT_WINDOW_S` hits per window, the previous window weighted by how much of it
still overlaps. A client that was idle may therefore burst a whole window's allowance, and a steady one
gets `RATE_LIMIT_PER_S`.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from shared import redis_keys

#: The least a refused client is told to wait: Retry-After is in whole seconds.
MIN_RETRY_AFTER_S = 1


class RateLimit:
    def __init__(self, redis: Redis, per_s: int, window_s: int) -> None:
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=redis_keys.RATE_LIMIT_PREFIX,
            connection_pool=redis.connection_pool,
        )
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._item = RateLimitItemPerSecond(per_s * window_s, window_s)
        self.per_s = per_s

    async def hit(self, client: str) -> int | None:
        """Count one request of `client`: None when allowed, else the seconds it should wait."""
        if await self._limiter.hit(self._item, client):
            return None
        stats = await self._limiter.get_window_stats(self._item, client)
        return retry_after_s(stats.reset_time, time.time())


def retry_after_s(reset_at: float, now: float) -> int:
    return max(MIN_RETRY_AFTER_S, math.ceil(reset_at - now))
