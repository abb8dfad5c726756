"""Which execution drives an order right now.

dramatiq delivers at least once, so two executions can hold messages for the same order (a
redelivery after a missed heartbeat, a duplicate send), even in one process. The lease makes them
take turns; the event CAS in `OrderStore.append` makes one that lost its lease harmless anyway.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID, uuid4

from redis.asyncio import Redis

from shared import redis_keys

_SCRIPT = (Path(__file__).parent / "lua" / "lease.lua").read_text()


class OrderLeases:
    def __init__(self, redis: Redis, *, ttl_ms: int) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self._script = redis.register_script(_SCRIPT)

    async def take(self, order_id: UUID) -> str | None:
        """A token proving this execution holds the lease, or None while someone else holds it."""
        token = uuid4().hex
        taken = await self.redis.set(redis_keys.order_lease(order_id), token, nx=True, px=self.ttl_ms)
        return token if taken else None

    async def take_and_read(self, order_id: UUID) -> tuple[str | None, dict[bytes, bytes]]:
        """`take`, and the order's hash as HGETALL returns it, in one round trip. The hash is read after the
        SET in the same pipeline: when the lease was taken, no other holder can change the order after it."""
        token = uuid4().hex
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(redis_keys.order_lease(order_id), token, nx=True, px=self.ttl_ms)
            pipe.hgetall(redis_keys.order(order_id))
            taken, raw = await pipe.execute()
        return (token if taken else None), raw

    async def renew(self, order_id: UUID, token: str) -> bool:
        return bool(await self._script(keys=[redis_keys.order_lease(order_id)], args=["renew", token, self.ttl_ms]))

    async def release(self, order_id: UUID, token: str) -> bool:
        return bool(await self._script(keys=[redis_keys.order_lease(order_id)], args=["release", token, 0]))
