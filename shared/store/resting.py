"""What limit and sniper orders share while they rest: the hand-off to execution.

A trigger first takes orders out of where they rest into a hand-off sorted set (atomically, in a Lua script
of the book that owns them); `RestingBook.hand_over` then appends `triggered` and enqueues the execution
message for each, in one step that also claims the order from the hand-off set. A worker that died in
between leaves the order in the hand-off set, and whoever recovers it hands it over once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from loguru import logger
from redis.asyncio import Redis

from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.domain.limits import order_id_of
from shared.domain.orders import Order
from shared.execution.messages import execute_order_message
from shared.store.doorbell import earliest
from shared.store.order_store import Change, OrderState, OrderStore, RestingPlace
from shared.store.replies import members

#: For one order being handed over: extra fields for its `triggered` event, and fields to remember.
TriggerFields = tuple[dict[str, object], Mapping[str, object]]
TriggerDetails = Callable[[OrderState], TriggerFields]

#: Orders handed over per load and per pipeline of scripts (see `RestingBook.hand_over`).
HAND_OVER_CHUNK = 500


class RestingBook:
    def __init__(self, redis: Redis, store: OrderStore, *, partition: int, handoff_key: str, expiries_key: str) -> None:
        self.redis = redis
        self.store = store
        self.partition = partition
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

    async def hand_over(self, members: list[str], details: TriggerDetails) -> list[Order]:
        """Append `triggered` and enqueue execution for each member, in order; returns the orders that went.

        A large crossing goes in chunks of HAND_OVER_CHUNK, each loaded while Redis runs the previous one's
        scripts: the process's work and Redis's overlap instead of taking turns."""
        handed: list[Order] = []
        appending: asyncio.Task[list[Order]] | None = None
        try:
            for start in range(0, len(members), HAND_OVER_CHUNK):
                chunk = members[start : start + HAND_OVER_CHUNK]
                states = await self.store.load_heads([order_id_of(m) for m in chunk])
                changes, done = self._triggered(chunk, states, details)
                if appending is not None:
                    handed += await appending
                appending = asyncio.ensure_future(self._append(changes, done))
            if appending is not None:
                handed += await appending
        finally:
            if appending is not None and not appending.done():
                appending.cancel()
        return handed

    def _triggered(
        self, members: list[str], states: list[OrderState | None], details: TriggerDetails
    ) -> tuple[list[Change], list[str]]:
        """The `triggered` step of each member still waiting, and the members with nothing left to do."""
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
        return changes, done

    async def _append(self, changes: list[Change], done: list[str]) -> list[Order]:
        if done:
            await self.redis.zrem(self.handoff_key, *done)
        outcomes = await self.store.append_many(changes) if changes else []
        handed = [change[0].order for change, outcome in zip(changes, outcomes, strict=True) if outcome is None]
        for order_type in {order.type for order in handed}:
            # One line per order (`order_ids`), so `jq select(.orderId==…)` shows who triggered it.
            ids = [order.order_id for order in handed if order.type is order_type]
            logger.info("triggered {} order: handed to execution", order_type.value, order_ids=ids)
        return handed
