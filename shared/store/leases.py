"""Which worker drives an order right now.

dramatiq delivers at least once, so two workers can hold messages for the same order (a redelivery
after a missed heartbeat, a duplicate send). The lease makes them take turns; the event CAS in
`OrderStore.append` makes a turn-taker that lost its lease harmless anyway.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID, uuid4

from redis.asyncio import Redis

from shared import redis_keys

_SCRIPT = (Path(__file__).parent / "lua" / "lease.lua").read_text()


class OrderLeases:
    def __init__(self, redis: Redis, *, ttl_ms: int, owner: str | None = None) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self.owner = owner or uuid4().hex
        self._script = redis.register_script(_SCRIPT)

    def _token(self, order_id: UUID) -> str:
        return f"{self.owner}:{order_id}"

    async def _call(self, op: str, order_id: UUID) -> bool:
        result = await self._script(
            keys=[redis_keys.order_lease(order_id)], args=[op, self._token(order_id), self.ttl_ms]
        )
        return bool(result)

    async def take(self, order_id: UUID) -> bool:
        return await self._call("take", order_id)

    async def renew(self, order_id: UUID) -> bool:
        return await self._call("renew", order_id)

    async def release(self, order_id: UUID) -> bool:
        return await self._call("release", order_id)
