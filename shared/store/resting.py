"""What limit and sniper orders share while they rest: the hand-off to execution.

A trigger first takes orders out of where they rest into a hand-off sorted set (atomically, in a Lua script
of the book that owns them); `RestingBook.hand_over` then appends `triggered` and enqueues the execution
message for each, in one step that also claims the order from the hand-off set. A worker that died in
between leaves the order in the hand-off set, and whoever recovers it hands it over once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from uuid import UUID

from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.domain.limits import order_id_of
from shared.execution.messages import execute_order_message
from shared.logging import order_logger
from shared.store.doorbell import earliest
from shared.store.order_store import Change, OrderState, OrderStore, RestingPlace
from shared.store.replies import members

#: For one order being handed over: extra fields for its `triggered` event, and fields to remember.
TriggerFields = tuple[dict[str, object], Mapping[str, object]]
TriggerDetails = Callable[[OrderState], TriggerFields]


class RestingBook:
    def __init__(self, redis: Redis, store: OrderStore, *, handoff_key: str, expiries_key: str) -> None:
        self.redis = redis
        self.store = store
        self.handoff_key = handoff_key
        self.expiries_key = expiries_key

    def handoff_claim(self, member: str) -> RestingPlace:
        return RestingPlace(key=self.handoff_key, member=member, expiries_key=self.expiries_key)

    async def stranded(self, older_than_ms: int, limit: int = 1000) -> list[str]:
        """Hand-off members left behind by a worker that died before handing them over."""
        before = int(time.time() * 1000) - older_than_ms
        return members(await self.redis.zrangebyscore(self.handoff_key, "-inf", before, start=0, num=limit))

    async def next_chore_ms(self, stranded_after_ms: int) -> int | None:
        """When housekeeping is next due (epoch ms): the earliest deadline, or the moment the oldest
        hand-off counts as stranded; None when neither set holds anything."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrange(self.expiries_key, 0, 0, withscores=True)
            pipe.zrange(self.handoff_key, 0, 0, withscores=True)
            first_expiry, first_handoff = await pipe.execute()
        return earliest(
            int(first_expiry[0][1]) if first_expiry else None,
            int(first_handoff[0][1]) + stranded_after_ms if first_handoff else None,
        )

    async def hand_over(self, members: list[str], details: TriggerDetails) -> int:
        """Append `triggered` and enqueue execution for each member, in order; returns how many went."""
        if not members:
            return 0
        states = await self.load_all([order_id_of(m) for m in members])
        changes: list[Change] = []
        done: list[str] = []
        for member, state in zip(members, states, strict=True):
            if state is None or state.status is not OrderStatus.WAITING:
                done.append(member)  # already handed over, or gone
                continue
            extra, remember = details(state)
            event = OrderEvent(
                state.order.order_id, state.seq + 1, OrderStatus.TRIGGERED, state.order.type.value,
                client_order_id=state.order.client_order_id, extra=extra,
            )  # fmt: skip
            changes.append((state, event, remember, self.handoff_claim(member),
                            execute_order_message(state.order.order_id)))  # fmt: skip
        if done:
            await self.redis.zrem(self.handoff_key, *done)
        outcomes = await self.store.append_many(changes) if changes else []
        handed = [change[0].order for change, outcome in zip(changes, outcomes, strict=True) if outcome is None]
        for order in handed:  # one line per order, so `jq select(.orderId==…)` shows who triggered it
            order_logger(order.order_id).info("triggered {} order: handed to execution", order.type.value)
        return len(handed)

    async def load_all(self, order_ids: list[UUID]) -> list[OrderState | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for order_id in order_ids:
                pipe.hgetall(redis_keys.order(order_id))
            raw = await pipe.execute()
        return [self.store.state_from(fields) for fields in raw]
