"""An async result computed at most once per period and shared by every caller meanwhile.

Probes (/ready, /metrics) and the Redis memory check are asked far more often than their answer changes:
a hundred concurrent /ready calls must not take a hundred PostgreSQL connections, nor a submission burst send
one INFO per order. Callers that arrive while the value is being computed await that one computation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedResult(Generic[T]):
    def __init__(
        self, compute: Callable[[], Awaitable[T]], ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._compute = compute
        self._ttl_s = ttl_s
        self._clock = clock
        self._value: T | None = None
        self._fresh_until = float("-inf")
        self._inflight: asyncio.Future[T] | None = None
        self.computations = 0

    async def get(self) -> T:
        if self._clock() < self._fresh_until:
            return self._value  # type: ignore[return-value]
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._refresh())
        # Shielded: a caller that gives up (its client left) must not cancel the computation the others await.
        return await asyncio.shield(self._inflight)

    async def _refresh(self) -> T:
        self.computations += 1
        try:
            value = await self._compute()
        finally:
            self._inflight = None
        self._value, self._fresh_until = value, self._clock() + self._ttl_s
        return value
