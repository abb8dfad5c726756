"""Resting limit orders in Redis price buckets: placing them, and taking every crossed one on a tick.

Placing happens inside the API's order-creating script (see `resting_place`); taking happens in one Lua
script per tick (`take_crossed`), which moves crossed orders from their buckets to the hand-off set
atomically, so with any number of limit workers racing on the same ticks each order is taken once.
The hand-off to execution (`hand_over`) appends `triggered` and enqueues the execution message in one
step that also claims the order from the hand-off set: a worker that died in between leaves the order
there, and whoever recovers it hands it over once.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from uuid import UUID

from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.domain.limits import bucket_floor, bucket_of, order_id_of, rest_member, tick_size
from shared.domain.orders import Order
from shared.execution.messages import execute_order_message
from shared.store.order_store import OrderState, OrderStore, RestingPlace

_TAKE = (Path(__file__).parent / "lua" / "take_crossed.lua").read_text()


def resting_place(order: Order) -> RestingPlace:
    if order.limit_price is None:
        raise ValueError("only limit orders rest in price buckets")
    tick = tick_size(order.token_in, order.token_out)
    bucket = bucket_of(order.limit_price, tick)
    return RestingPlace(
        key=redis_keys.limit_bucket(order.pair, bucket),
        member=rest_member(order.created_at, order.order_id),
        score=str(order.limit_price),
        index_key=redis_keys.limit_buckets(order.pair),
        index_member=str(bucket),
        index_score=str(bucket_floor(bucket, tick)),
        expiries_key=redis_keys.LIMIT_EXPIRIES,
        expires_at_ms=None if order.expires_at is None else int(order.expires_at.timestamp() * 1000),
    )


def handoff_claim(member: str) -> RestingPlace:
    return RestingPlace(key=redis_keys.LIMIT_HANDOFF, member=member, expiries_key=redis_keys.LIMIT_EXPIRIES)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LimitBook:
    def __init__(self, redis: Redis, store: OrderStore) -> None:
        self.redis = redis
        self.store = store
        self._take = redis.register_script(_TAKE)

    async def take_crossed(self, pair: str, best_price: Decimal) -> list[str]:
        """Move every order the price crosses into the hand-off set; their members, in trigger order."""
        members = await self._take(
            keys=[redis_keys.limit_buckets(pair), redis_keys.LIMIT_HANDOFF],
            args=[redis_keys.limit_bucket_prefix(pair), str(best_price), int(time.time() * 1000)],
        )
        return [_text(m) for m in members]

    async def stranded(self, older_than_ms: int, limit: int = 1000) -> list[str]:
        """Hand-off members left behind by a worker that died before handing them over."""
        before = int(time.time() * 1000) - older_than_ms
        return [
            _text(m)
            for m in await self.redis.zrangebyscore(redis_keys.LIMIT_HANDOFF, "-inf", before, start=0, num=limit)
        ]

    async def hand_over(self, members: list[str], trigger_price: Decimal | None) -> int:
        """Append `triggered` and enqueue execution for each member, in order; returns how many went.

        A recovered hand-off (`trigger_price` None) measures slippage from the order's limit price: the
        least the price that crossed it can have been.
        """
        if not members:
            return 0
        states = await self._load_all([order_id_of(m) for m in members])
        changes = []
        for member, state in zip(members, states, strict=True):
            if state is None or state.status is not OrderStatus.WAITING:
                await self.redis.zrem(redis_keys.LIMIT_HANDOFF, member)  # already handed over, or gone
                continue
            price = trigger_price if trigger_price is not None else state.order.limit_price
            event = OrderEvent(
                state.order.order_id,
                state.seq + 1,
                OrderStatus.TRIGGERED,
                state.order.type.value,
                client_order_id=state.order.client_order_id,
                extra={"triggerPrice": str(price), "limitPrice": str(state.order.limit_price)},
            )
            changes.append(
                (
                    state,
                    event,
                    {"referencePrice": price},
                    handoff_claim(member),
                    execute_order_message(state.order.order_id),
                )
            )
        outcomes = await self.store.append_many(changes)
        return sum(1 for outcome in outcomes if outcome is None)

    async def _load_all(self, order_ids: list[UUID]) -> list[OrderState | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for order_id in order_ids:
                pipe.hgetall(redis_keys.order(order_id))
            raw = await pipe.execute()
        return [self.store.state_from(fields) for fields in raw]
