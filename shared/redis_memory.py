"""How close Redis is to its `maxmemory`, so the API can refuse new work before Redis refuses writes.

Past `maxmemory` (with the `noeviction` policy orders need) Redis answers every write with OOM, including the
steps of orders already accepted. Refusing new submissions a margin earlier keeps that memory for them.
`INFO memory` is read at most once per `refresh_s` per process, never per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.shared_result import SharedResult

REFRESH_S = 1.0


@dataclass(frozen=True, slots=True)
class MemoryReading:
    used: int
    maxmemory: int  # 0: Redis has no limit

    @property
    def fraction(self) -> float | None:
        return self.used / self.maxmemory if self.maxmemory else None

    def high(self, threshold: float) -> bool:
        """Over `threshold` of maxmemory; never with the check off (0) or an unlimited Redis."""
        return threshold > 0 and self.maxmemory > 0 and self.used >= threshold * self.maxmemory


def reading_from_info(info: dict[str, Any]) -> MemoryReading:
    return MemoryReading(used=int(info.get("used_memory", 0)), maxmemory=int(info.get("maxmemory", 0)))


class RedisMemoryWatch:
    def __init__(self, redis: Redis, threshold: float, refresh_s: float = REFRESH_S) -> None:
        self.redis = redis
        self.threshold = threshold
        self._latest = SharedResult(self._read, refresh_s)

    async def reading(self) -> MemoryReading | None:
        """The latest reading (at most `refresh_s` old); None when Redis did not answer INFO."""
        return await self._latest.get()

    async def high(self) -> bool:
        if self.threshold <= 0:
            return False
        reading = await self.reading()
        return reading is not None and reading.high(self.threshold)

    async def _read(self) -> MemoryReading | None:
        try:
            return reading_from_info(await self.redis.info("memory"))
        except (RedisError, OSError) as exc:  # unknown is not high: the order's own write will tell
            logger.debug("INFO memory failed: {!r}", exc)
            return None
