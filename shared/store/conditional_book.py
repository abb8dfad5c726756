"""Resting conditional orders (stop, trailing stop, OCO) in Redis, and firing them on BEST ticks.

Where each type rests and why a tick's cost grows only with the orders it fires: docs/conditional-orders.md.
Placing happens inside the API's order-creating script (see `resting_place`); firing is one Lua script per
pair per batch of ticks (take_conditional.lua), which takes fired orders into the hand-off set with the
condition, price and high-water mark that fired them; `RestingBook.hand_over` does the rest.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from redis.asyncio import Redis
from redis.exceptions import TryAgainError

from shared import redis_keys
from shared.domain.conditional import Taken, trail_level
from shared.domain.limits import order_id_of, rest_member
from shared.domain.order_types import OrderType
from shared.domain.orders import Order
from shared.domain.partitions import partition_of
from shared.store.order_store import OrderState, OrderStore, RestingPlace
from shared.store.replies import members
from shared.store.resting import RestingBook, TriggerFields
from shared.store.scripts import TakeConditionalArgs, lua_source, run

#: take_conditional.lua's answer when trail widths were added since the caller read them (it changed nothing).
WIDTHS_CHANGED = -1
#: Reads of the widths before giving up: each retry needs an order of a width new to the pair's book placed
#: between one read and its script.
STALE_WIDTHS_RETRIES = 100


class WidthsKeptChanging(TryAgainError):
    """The batch could not be applied this round: a Redis error like any other to the tick loop, which reads
    the same ticks again next round (books that applied them skip them)."""


#: Score of a trailing stop not armed yet in its width's set: no tick number reaches it.
NOT_ARMED = "+inf"

#: One pair's ticks as the stream has them: (entry id, BEST price), oldest first.
Ticks = Sequence[tuple[str, str]]


def resting_place(order: Order) -> RestingPlace:
    """Where a conditional order rests; an OCO's take-profit side and a trailing stop's activation are its
    second set, claimed together with the first (the one that decides a cancel, trigger or expiry race)."""
    pair, member, partition = order.pair, rest_member(order.created_at, order.order_id), partition_of(order.order_id)
    rests = RestingPlace(
        key=redis_keys.cond_stops(pair, partition),
        member=member,
        expiries_key=redis_keys.cond_expiries(partition),
        expires_at_ms=None if order.expires_at is None else int(order.expires_at.timestamp() * 1000),
        doorbell_key=redis_keys.cond_doorbell(partition),
        ring="earlier",
    )
    if order.type is OrderType.STOP and order.stop_price is not None:
        return replace(rests, score=str(order.stop_price))
    if order.type is OrderType.OCO and order.stop_price is not None and order.take_profit_price is not None:
        take_profit = str(order.take_profit_price)
        return replace(
            rests,
            score=str(order.stop_price),
            second_key=redis_keys.cond_take_profits(pair, partition),
            second_member=member,
            second_score=take_profit,
        )
    if order.type is OrderType.TRAILING_STOP and order.trail_bps is not None:
        bps = order.trail_bps
        return replace(
            rests,
            key=redis_keys.cond_trail(pair, bps, partition),
            score=NOT_ARMED,
            index_key=redis_keys.cond_trail_widths(pair, partition),
            index_member=str(bps),
            index_score=str(bps),
            second_key=redis_keys.cond_activations(pair, partition),
            second_member=f"{bps}/{member}",
            second_score=str(order.activation_price or 0),
        )
    raise ValueError(f"order {order.order_id} is not a conditional order with its fields")


@dataclass(frozen=True, slots=True)
class TrailState:
    """A resting trailing stop as a client sees it: armed or not, and if so its high and its stop level."""

    armed: bool
    high_water_mark: Decimal | None = None
    stop_level: Decimal | None = None

    def view(self) -> dict[str, object]:
        return {
            "armed": self.armed,
            "highWaterMark": None if self.high_water_mark is None else str(self.high_water_mark),
            "stopLevel": None if self.stop_level is None else str(self.stop_level),
        }


class ConditionalBook(RestingBook):
    """One partition's resting conditional orders, every pair's."""

    def __init__(self, redis: Redis, store: OrderStore, partition: int = 0) -> None:
        super().__init__(
            redis,
            store,
            partition=partition,
            handoff_key=redis_keys.cond_handoff(partition),
            expiries_key=redis_keys.cond_expiries(partition),
        )
        self._take = redis.register_script(lua_source(TakeConditionalArgs.SCRIPT))

    async def apply_ticks(self, pair: str, ticks: Ticks) -> list[Taken]:
        """Apply one pair's ticks, in order, once each; the orders they fired, in the order they fired."""
        p = self.partition
        widths_index = redis_keys.cond_trail_widths(pair, p)
        for _ in range(STALE_WIDTHS_RETRIES):
            widths = members(await self.redis.zrange(widths_index, 0, -1))
            args = TakeConditionalArgs(
                stops=redis_keys.cond_stops(pair, p),
                take_profits=redis_keys.cond_take_profits(pair, p),
                activations=redis_keys.cond_activations(pair, p),
                trail_widths=widths_index,
                records_by_price=redis_keys.cond_highs(pair, p),
                records_by_tick=redis_keys.cond_highs_at(pair, p),
                tick_state=redis_keys.cond_ticks(pair, p),
                hand_off_set=self.handoff_key,
                now_ms=int(time.time() * 1000),
                trails=[(redis_keys.cond_trail(pair, int(bps), p), bps) for bps in widths],
                ticks=ticks,
            )
            reply = await run(self._take, args)
            if reply != WIDTHS_CHANGED:
                return [Taken.from_member(member) for member in members(reply)]
        raise WidthsKeptChanging(f"{pair}: trail widths kept changing while its ticks were applied")

    async def hand_over_taken(self, taken: Sequence[Taken]) -> list[tuple[Taken, OrderType]]:
        """Append `triggered` (with the condition, price and high that fired it) and enqueue execution; what
        this call handed over, with each order's type (not what a cancel, an expiry or another worker had ended
        first)."""
        why = {order_id_of(t.member): t for t in taken}

        def details(state: OrderState) -> TriggerFields:
            fired = why[state.order.order_id]
            extra: dict[str, object] = {"trigger": fired.condition.value, "triggerPrice": str(fired.price)}
            if fired.high_water_mark is not None:
                extra["highWaterMark"] = str(fired.high_water_mark)
            return extra | state.order.conditions(), {}

        handed = await self.hand_over([t.member for t in taken], details)
        return [(why[order.order_id], order.type) for order in handed]

    async def recover(self, members: Sequence[str]) -> list[tuple[Taken, OrderType]]:
        """Hand over members a dead worker left in the hand-off set: each says why its order fired."""
        return await self.hand_over_taken([Taken.from_member(member) for member in members])


async def trail_state(redis: Redis, state: OrderState) -> TrailState:
    """A resting trailing stop's high-water mark and stop level now (for GET /api/orders/{id})."""
    place, bps = RestingPlace.from_fields(state.fields), state.order.trail_bps
    if place is None or bps is None:
        return TrailState(armed=False)
    armed_at = await redis.zscore(place.key, place.member)
    if armed_at is None or armed_at == float("inf"):
        return TrailState(armed=False)
    highs = redis_keys.cond_highs_at(state.order.pair, partition_of(state.order.order_id))
    record = members(await redis.zrangebyscore(highs, armed_at, "+inf", start=0, num=1))
    if not record:
        return TrailState(armed=True)
    high = Decimal(record[0])
    return TrailState(True, high, trail_level(high, bps))


def ticks_per_pair(entries: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> dict[str, list[tuple[str, str]]]:
    """A batch of `stream:ticks` entries as each pair's ticks, in stream order: every one counts (unlike
    for limit orders, where the latest price is all that matters), since any of them may be a new high."""
    per_pair: dict[str, list[tuple[str, str]]] = {}
    for entry_id, fields in entries:
        per_pair.setdefault(fields[b"pair"].decode(), []).append((entry_id.decode(), fields[b"price"].decode()))
    return per_pair
