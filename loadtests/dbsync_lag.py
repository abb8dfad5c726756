"""How far PostgreSQL trails the event stream, sampled from db-sync's consumer group in Redis.

db-sync acknowledges a `stream:events` entry only after PostgreSQL committed it, so the oldest entry not yet
acknowledged (the oldest pending one, else the first one not yet delivered) is the oldest event PostgreSQL
does not have. Its age, from the millisecond in its stream id, is the history's lag at that moment; sampled
every `interval_s` the maximum of those ages is the longest any event waited for its row (± one interval).
Three cheap Redis commands per sample; nothing is read from PostgreSQL while the load runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from redis.asyncio import Redis

from shared.redis_client import redis_client
from shared.redis_keys import DBSYNC_GROUP, events_stream
from shared.settings import Settings

EVENTS_STREAM = events_stream(0)  # the engine's default: one partition


def _ms_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


async def oldest_unpersisted_age_s(redis: Redis, now_ms: int) -> float:
    """Age of the oldest event db-sync has not acknowledged yet; 0 when it has them all."""
    async with redis.pipeline(transaction=True) as pipe:  # one moment for both readings
        pipe.xinfo_groups(EVENTS_STREAM)
        pipe.xpending(EVENTS_STREAM, DBSYNC_GROUP)
        groups, summary = await pipe.execute()
    group = next((g for g in groups if g["name"] in (DBSYNC_GROUP, DBSYNC_GROUP.encode())), None)
    if group is None:
        return 0.0
    oldest = _ms_of(summary["min"]) if summary["pending"] else None
    undelivered = await redis.xrange(EVENTS_STREAM, min=f"({_id_text(group['last-delivered-id'])}", count=1)
    if undelivered:
        first = _ms_of(undelivered[0][0])
        oldest = first if oldest is None else min(oldest, first)
    return 0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000)


def _id_text(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


class LagSampler:
    def __init__(self, redis_url: str, interval_s: float = 0.1, *, cluster: bool = False) -> None:
        self.redis: Redis = redis_client(
            Settings(redis_url=redis_url, redis_cluster=cluster), acknowledged_writes=False
        )
        self.interval_s = interval_s
        self.samples: list[float] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.samples.append(await oldest_unpersisted_age_s(self.redis, int(time.time() * 1000)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    async def drained_within(self, timeout_s: float) -> float | None:
        """Seconds until db-sync has acknowledged everything, or None if it had not after `timeout_s`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if await oldest_unpersisted_age_s(self.redis, int(time.time() * 1000)) == 0.0:
                return time.monotonic() - started
            await asyncio.sleep(self.interval_s)
        return None

    async def close(self) -> None:
        await self.redis.aclose()
