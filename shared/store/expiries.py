"""Ending resting orders whose `expiresAt` has passed, within a sweep period of the deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.domain.orders import Order
from shared.store.order_store import Change, OrderStore, RestingPlace
from shared.store.replies import members

SWEEP_BATCH = 500


class ExpirySweeper:
    def __init__(self, redis: Redis, store: OrderStore, expiries_key: str) -> None:
        self.redis = redis
        self.store = store
        self.expiries_key = expiries_key

    async def sweep(
        self, now_ms: int | None = None, on_expired: Callable[[Order, OrderEvent], None] | None = None
    ) -> int:
        """Expire every due order still resting; returns how many this call expired. `on_expired` is told
        of each order this call expired (and no other: a racing cancel or trigger that won is not)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        due = members(await self.redis.zrangebyscore(self.expiries_key, "-inf", now_ms, start=0, num=SWEEP_BATCH))
        if not due:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for order_id in due:
                pipe.hgetall(redis_keys.order(order_id))
            states = [self.store.state_from(raw) for raw in await pipe.execute()]
        changes: list[Change] = []
        finished: list[str] = []
        for order_id, state in zip(due, states, strict=True):
            place = RestingPlace.from_fields(state.fields) if state else None
            if state is None or state.status is not OrderStatus.WAITING or place is None:
                finished.append(order_id)  # no longer resting: nothing to expire
                continue
            event = OrderEvent(
                state.order.order_id,
                state.seq + 1,
                OrderStatus.EXPIRED,
                state.order.type.value,
                client_order_id=state.order.client_order_id,
            )
            changes.append((state, event, None, place, None))
        if finished:
            await self.redis.zrem(self.expiries_key, *finished)
        outcomes = await self.store.append_many(changes) if changes else []
        expired = [(state.order, event) for (state, event, *_), outcome in zip(changes, outcomes, strict=True)
                   if outcome is None]  # fmt: skip
        if on_expired is not None:
            for order, event in expired:
                on_expired(order, event)
        return len(expired)
