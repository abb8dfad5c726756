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
        self,
        compute: Callable[[], Awaitable[T]],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_per_s: float | None = None,
    ) -> None:
        """`max_per_s`: past this many computations a second (a burst of as many allowed), callers get the
        last value however old: fresh for every ordinary caller, bounded work for a flood."""
        self._compute = compute
        self._ttl_s = ttl_s
        self._clock = clock
        self._value: T | None = None
        self._has_value = False
        self._fresh_until = float("-inf")
        self._inflight: asyncio.Future[T] | None = None
        self.computations = 0
        self._max_per_s = max_per_s
        self._budget = max_per_s or 0.0
        self._budget_at = clock()

    async def get(self) -> T:
        if self._clock() < self._fresh_until or (self._inflight is None and self._over_budget()):
            # A T, not None: both conditions hold only once a computation has succeeded and set `_value`.
            return self._value  # type: ignore[return-value]
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._refresh())
        # Shielded: a caller that gives up (its client left) must not cancel the computation the others await.
        return await asyncio.shield(self._inflight)

    def _over_budget(self) -> bool:
        """Spend one computation from a bucket refilled at `max_per_s`; True when it is empty and a value exists
        (computations that failed leave none: their callers got the error, the next one must compute)."""
        if self._max_per_s is None or not self._has_value:
            return False
        now = self._clock()
        self._budget = min(self._max_per_s, self._budget + (now - self._budget_at) * self._max_per_s)
        self._budget_at = now
        if self._budget < 1:
            return True
        self._budget -= 1
        return False

    async def _refresh(self) -> T:
        self.computations += 1
        try:
            value = await self._compute()
        finally:
            self._inflight = None
        self._value, self._has_value, self._fresh_until = value, True, self._clock() + self._ttl_s
        return value
