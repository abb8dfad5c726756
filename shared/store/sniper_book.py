"""Resting sniper orders in Redis sets keyed by what fires them, and firing them on venue events.

`sniper:{p<k>}:listing:<pair>` waits for the pair's first pool; `sniper:{p<k>}:liquidity:<pair>` waits for a
pool's reserve of tokenOut to reach each order's `minLiquidity` (the set's score), so one range query finds
every order a liquidity level satisfies. Taking is one Lua script per set, so replicas fire each order once.
Each partition has its own sets (docs/sharding.md): an event is acted on in every partition's.
"""

from __future__ import annotations

import time
from decimal import Decimal

from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.limits import rest_member
from shared.domain.orders import Order
from shared.domain.partitions import partition_of
from shared.store.order_store import OrderState, OrderStore, RestingPlace
from shared.store.replies import members, text
from shared.store.resting import RestingBook, TriggerFields
from shared.store.scripts import TakeRangeArgs, lua_source, run
from shared.venues.launches import LaunchParams, is_listed, reserve_of


def trigger_set(order: Order) -> tuple[str, str]:
    """The set an order waits in, and its score there."""
    trigger, partition = order.trigger or {}, partition_of(order.order_id)
    if trigger.get("kind") == "listing":
        return redis_keys.sniper_listing(order.pair, partition), str(int(order.created_at.timestamp() * 1_000_000))
    if trigger.get("kind") == "liquidity":
        return redis_keys.sniper_liquidity(order.pair, partition), str(trigger["minLiquidity"])
    raise ValueError(f"order {order.order_id} has no sniper trigger")


def resting_place(order: Order) -> RestingPlace:
    key, score = trigger_set(order)
    partition = partition_of(order.order_id)
    return RestingPlace(
        key=key,
        member=rest_member(order.created_at, order.order_id),
        score=score,
        index_key=redis_keys.sniper_resting(partition),
        index_member=key,
        expiries_key=redis_keys.sniper_expiries(partition),
        expires_at_ms=None if order.expires_at is None else int(order.expires_at.timestamp() * 1000),
        doorbell_key=redis_keys.sniper_doorbell(partition),
        ring="always",
    )


class SniperBook(RestingBook):
    """One partition's resting sniper orders, every pair's."""

    def __init__(self, redis: Redis, store: OrderStore, partition: int = 0) -> None:
        super().__init__(
            redis,
            store,
            partition=partition,
            handoff_key=redis_keys.sniper_handoff(partition),
            expiries_key=redis_keys.sniper_expiries(partition),
        )
        self.resting_index = redis_keys.sniper_resting(partition)
        self._take = redis.register_script(lua_source(TakeRangeArgs.SCRIPT))

    async def _take_from(self, key: str, max_score: str) -> list[str]:
        take = TakeRangeArgs(
            trigger_set=key,
            hand_off_set=self.handoff_key,
            index_of_non_empty_trigger_sets=self.resting_index,
            max_score=max_score,
            now_ms=int(time.time() * 1000),
        )
        return members(await run(self._take, take))

    async def take_listing(self, pair: str) -> list[str]:
        return await self._take_from(redis_keys.sniper_listing(pair, self.partition), "+inf")

    async def take_liquidity(self, pair: str, reserve_out: Decimal) -> list[str]:
        return await self._take_from(redis_keys.sniper_liquidity(pair, self.partition), str(reserve_out))

    async def resting_sets(self) -> list[str]:
        return members(await self.redis.zrange(self.resting_index, 0, -1))

    async def fire(self, members: list[str], cause: dict[str, str] | None) -> int:
        """Hand fired orders to execution; `cause` (the venue event) is recorded on `triggered`."""

        def details(state: OrderState) -> TriggerFields:
            return {"trigger": state.order.trigger, "venueEvent": cause}, {}

        return len(await self.hand_over(members, details))

    async def on_venue_event(self, fields: dict[bytes, bytes]) -> int:
        """Fire every order the event satisfies, for both directions of the event's pair."""
        decoded = {text(k): text(v) for k, v in fields.items()}
        tokens = decoded["tokens"].split(",")
        reserves = {k.removeprefix("reserve:"): Decimal(v) for k, v in decoded.items() if k.startswith("reserve:")}
        cause = {"id": decoded["id"], "kind": decoded["kind"], "dex": decoded["dex"]}
        fired = 0
        for token_in, token_out in (tokens, tokens[::-1]):
            pair = f"{token_in}-{token_out}"
            members = await self.take_listing(pair) + await self.take_liquidity(pair, reserves[token_out])
            fired += await self.fire(members, cause)
        return fired

    async def sweep(self, sim: LaunchParams, now: float) -> int:
        """Fire orders whose condition already holds (placed after their event, or events missed while down)."""
        fired = 0
        for key in await self.resting_sets():
            kind, pair = redis_keys.sniper_set_trigger(key, self.partition)
            token_in, _, token_out = pair.partition("-")
            if kind == "listing":
                members = await self.take_listing(pair) if is_listed(token_in, token_out, now, sim) else []
            else:
                reserve = reserve_of(token_out, token_in, now, sim)
                members = await self.take_liquidity(pair, reserve) if reserve is not None else []
            fired += await self.fire(members, {"kind": "already_met"})
        return fired
