"""Which execution drives an order right now.

dramatiq delivers at least once, so two executions can hold messages for the same order (a
redelivery after a missed heartbeat, a duplicate send), even in one process. The lease makes them
take turns. An execution's appends are fenced by its lease (`OrderStore.append(fence=...)`), and each is a
compare-and-set on `seq` besides, so one that lost its lease (cut off from Redis longer than the TTL) cannot
write when it comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID, uuid4

from redis.asyncio import Redis

from shared import redis_keys
from shared.store.scripts import LeaseArgs, lua_source, run


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that one execution holds an order: only the holder of the token may renew or release it."""

    order_id: UUID
    token: str

    @property
    def key(self) -> str:
        return redis_keys.order_lease(self.order_id)


class OrderLeases:
    def __init__(self, redis: Redis, *, ttl_ms: int) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self._script = redis.register_script(lua_source(LeaseArgs.SCRIPT))

    async def take(self, order_id: UUID) -> Lease | None:
        """The lease, or None while someone else holds it."""
        lease, _ = await self.take_and_read(order_id)
        return lease

    async def take_and_read(
        self, order_id: UUID, lease: Lease | None = None
    ) -> tuple[Lease | None, dict[bytes, bytes]]:
        """`take`, and the order's hash as HGETALL returns it, in one script. The hash is read after the
        lease is taken: when it was, no other holder can change the order after the read. Pass the `lease`
        of a take whose reply was lost to send it again: if it landed, the lease is still this one's."""
        lease = lease or Lease(order_id, uuid4().hex)
        taken, flat = await self._take(lease)
        raw: dict[bytes, bytes] = dict(zip(flat[::2], flat[1::2], strict=True))
        return (lease if taken else None), raw

    async def renew(self, lease: Lease) -> bool:
        renew = LeaseArgs(lease=lease.key, op="renew", token=lease.token, ttl_ms=self.ttl_ms)
        return bool(await run(self._script, renew))

    async def retake(self, lease: Lease) -> bool:
        """Take `lease` again, with its own token, if it expired and nobody took it since (a holder that was cut
        off from Redis for longer than the TTL); False while another holds it. Renewing is what a holder that
        never lost it does: `renew` first, then this."""
        taken, _ = await self._take(lease)
        return bool(taken)

    async def _take(self, lease: Lease) -> tuple[int, list[bytes]]:
        """lease.lua's take: whether `lease` is held now, and the order's hash (flat, as HGETALL gives it)."""
        take = LeaseArgs(
            lease=lease.key, order=redis_keys.order(lease.order_id), op="take", token=lease.token, ttl_ms=self.ttl_ms
        )
        taken, flat = await run(self._script, take)
        return taken, flat

    async def release(self, lease: Lease) -> bool:
        release = LeaseArgs(lease=lease.key, op="release", token=lease.token, ttl_ms=0)
        return bool(await run(self._script, release))


class LeaseKeeper:
    """Renews every lease this process holds, all in one go every third of the TTL.

    One timer task per order in flight costs a task, a timer and a round trip each; here a single task
    renews them together (one pipeline on an auto-pipelining client) and exits when none is held, so an
    idle process keeps no timer.
    """

    def __init__(self, leases: OrderLeases, on_lost: Callable[[Lease], None]) -> None:
        self.leases = leases
        self.on_lost = on_lost
        self._held: dict[Lease, None] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def interval_s(self) -> float:
        return self.leases.ttl_ms / 3000

    def hold(self, lease: Lease) -> None:
        self._held[lease] = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._renew_while_held(), name="lease-keeper")

    def let_go(self, lease: Lease) -> None:
        self._held.pop(lease, None)

    async def _renew_while_held(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if not self._held:
                self._task = None  # no await between this check and the end: `hold` starts a new one
                return
            held = list(self._held)
            renewed = await asyncio.gather(*(self.leases.renew(lease) for lease in held), return_exceptions=True)
            for lease, ok in zip(held, renewed, strict=True):
                if ok is False and lease in self._held:
                    self._held.pop(lease, None)
                    self.on_lost(lease)
