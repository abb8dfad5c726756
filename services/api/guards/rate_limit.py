"""Requests per second per client, counted in Redis so that every API replica draws on one allowance.

The `limits` library's sliding-window counter (one Lua call per request, on the API's own Redis pool):
`RATE_LIMIT_PER_S × RATE_LIMIT_WINDOW_S` hits per window, the previous window weighted by how much of it
still overlaps. A client that was idle may therefore burst a whole window's allowance, and a steady one
gets `RATE_LIMIT_PER_S`.

A Lua call per request is a round trip on every request, so each process counts a client's hits
locally and settles them with Redis in one weighted hit every `LOCAL_SLACK_SHARE` of the allowance (2 %:
every 40th request at the default 2000 per window; every request when the allowance is under 50). Once
Redis said yes, a process admits up to that many more before asking again, so all replicas together
over-admit by at most 2 % of the allowance per replica; refusals still come from Redis's count.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from shared import redis_keys
from shared.redis_cluster import ClusterRedis

#: The least a refused client is told to wait: Retry-After is in whole seconds.
MIN_RETRY_AFTER_S = 1
#: Share of a window's allowance one process may admit on its own before settling the count with Redis.
LOCAL_SLACK_SHARE = 50  # 1/50 = 2 %
#: Clients whose unsettled hits are remembered; beyond it the memory is dropped (at most slack hits each).
MAX_TRACKED_CLIENTS = 10_000


class RateLimit:
    def __init__(self, redis: Redis, per_s: int, window_s: int) -> None:
        storage: RedisStorage
        if isinstance(redis, ClusterRedis):
            # limits' own cluster client (its keys carry hash tags); counts need no replica acknowledgement.
            uri = redis.seed_url.replace("redis://", "async+redis+cluster://", 1)
            storage = RedisClusterStorage(uri, implementation="redispy", key_prefix=redis_keys.RATE_LIMIT_PREFIX)
        else:
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=redis_keys.RATE_LIMIT_PREFIX,
                # limits documents `connection_pool` but types every extra option as float | str | bool.
                connection_pool=redis.connection_pool,  # type: ignore[arg-type]
            )
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._item = RateLimitItemPerSecond(per_s * window_s, window_s)
        self.per_s = per_s
        self._slack = per_s * window_s // LOCAL_SLACK_SHARE
        #: client -> hits admitted here since Redis last said yes (absent: ask Redis on the next request).
        self._unsettled: dict[str, int] = {}

    async def hit(self, client: str) -> int | None:
        """Count one request of `client`: None when allowed, else the seconds it should wait."""
        unsettled = self._unsettled.get(client)
        if unsettled is not None and unsettled < self._slack:
            self._unsettled[client] = unsettled + 1
            return None
        cost = (unsettled or 0) + 1
        self._unsettled.pop(client, None)
        if await self._limiter.hit(self._item, client, cost=cost):
            if self._slack:
                if len(self._unsettled) >= MAX_TRACKED_CLIENTS:
                    self._unsettled.clear()
                self._unsettled[client] = 0
            return None
        if cost > 1:  # the earlier hits were served: count them even though this one is refused
            await self._limiter.hit(self._item, client, cost=cost - 1)
        stats = await self._limiter.get_window_stats(self._item, client)
        return retry_after_s(stats.reset_time, time.time())


def retry_after_s(reset_at: float, now: float) -> int:
    return max(MIN_RETRY_AFTER_S, math.ceil(reset_at - now))
