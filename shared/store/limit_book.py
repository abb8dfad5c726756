"""Resting limit orders in Redis price buckets: placing them, and taking every crossed one on a tick.

Placing happens inside the API's order-creating script (see `resting_place`); taking happens in one Lua
script per tick (`take_crossed`), which moves crossed orders from their buckets to the hand-off set
atomically, so with any number of limit workers racing on the same ticks each order is taken once.
Each partition has its own book (docs/sharding.md): a tick is taken in every partition's.
"""

from __future__ import annotations

import time
from decimal import Decimal

from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.limits import bucket_floor, bucket_of, rest_member, tick_size
from shared.domain.orders import Order
from shared.domain.partitions import partition_of
from shared.store.order_store import OrderState, OrderStore, RestingPlace
from shared.store.replies import members
from shared.store.resting import RestingBook, TriggerFields
from shared.store.scripts import TakeCrossedArgs, lua_source, run


def resting_place(order: Order) -> RestingPlace:
    if order.limit_price is None:
        raise ValueError("only limit orders rest in price buckets")
    tick = tick_size(order.token_in, order.token_out)
    bucket, partition = bucket_of(order.limit_price, tick), partition_of(order.order_id)
    return RestingPlace(
        key=redis_keys.limit_bucket(order.pair, bucket, partition),
        member=rest_member(order.created_at, order.order_id),
        score=str(order.limit_price),
        index_key=redis_keys.limit_buckets(order.pair, partition),
        index_member=str(bucket),
        index_score=str(bucket_floor(bucket, tick)),
        expiries_key=redis_keys.limit_expiries(partition),
        expires_at_ms=None if order.expires_at is None else int(order.expires_at.timestamp() * 1000),
        doorbell_key=redis_keys.limit_doorbell(partition),
        ring="earlier",
    )


class LimitBook(RestingBook):
    """One partition's resting limit orders, every pair's."""

    def __init__(self, redis: Redis, store: OrderStore, partition: int = 0) -> None:
        super().__init__(
            redis,
            store,
            partition=partition,
            handoff_key=redis_keys.limit_handoff(partition),
            expiries_key=redis_keys.limit_expiries(partition),
        )
        self._take = redis.register_script(lua_source(TakeCrossedArgs.SCRIPT))

    async def take_crossed(self, pair: str, best_price: Decimal) -> list[str]:
        """Move every order the price crosses into the hand-off set; their members, in trigger order."""
        price = str(best_price)
        index = redis_keys.limit_buckets(pair, self.partition)
        # Most ticks cross nothing: one read answers them, and names the buckets the script may touch.
        crossed = members(await self.redis.zrangebyscore(index, "-inf", price))
        if not crossed:
            return []
        take = TakeCrossedArgs(
            bucket_index=index,
            hand_off_set=self.handoff_key,
            price=price,
            now_ms=int(time.time() * 1000),
            buckets=[(redis_keys.limit_bucket(pair, int(bucket), self.partition), bucket) for bucket in crossed],
        )
        return members(await run(self._take, take))

    async def hand_over_at(self, members: list[str], trigger_price: Decimal | None) -> int:
        """Hand crossed orders to execution; slippage will be measured from `trigger_price`.

        A recovered hand-off (`trigger_price` None) measures it from the order's limit price: the least
        the price that crossed it can have been.
        """

        def details(state: OrderState) -> TriggerFields:
            price = trigger_price if trigger_price is not None else state.order.limit_price
            return {"triggerPrice": str(price), "limitPrice": str(state.order.limit_price)}, {"referencePrice": price}

        return len(await self.hand_over(members, details))
