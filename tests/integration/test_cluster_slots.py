"""An order's whole life names one hash slot per command, as a Redis Cluster requires (docs/sharding.md):
driven through the real store, the workers' books, executor, simulated venues and chain on the suite's Redis,
every command is checked as a cluster would check it."""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal

from services.execution_worker.__main__ import build_executor
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.domain.orders import Order, OrderRequest, accept
from shared.domain.partitions import new_order_id, partition_of
from shared.execution.messages import execute_order_message
from shared.redis_client import redis_client
from shared.store.conditional_book import ConditionalBook
from shared.store.expiries import ExpirySweeper
from shared.store.limit_book import LimitBook
from shared.store.order_store import OrderStore, RestingPlace
from shared.store.placement import placement
from shared.store.sniper_book import SniperBook
from tests.support.slots import audit_slots, cross_slot

PARTITIONS = 4


def test_the_audit_sees_what_a_cluster_refuses():
    assert cross_slot(("EVALSHA", "abc", 2, "order:{p1}:x", "stream:events:{p1}", "arg")) is None
    assert cross_slot(("EVALSHA", "abc", 2, "order:{p1}:x", "stream:events:{p2}", "arg")) is not None
    assert cross_slot(("DEL", "a", "b")) is not None and cross_slot(("GET", "a")) is None
    assert cross_slot(("XREAD", "COUNT", 5, "STREAMS", "s:{p1}", "s:{p2}", "$", "$")) is not None


async def test_market_orders_in_every_partition_run_one_slot_per_command(redis, settings):
    settings = settings.model_copy(update={"partitions": PARTITIONS})
    client = redis_client(settings, auto_pipeline=True)
    refused = audit_slots(client)
    try:
        executor = await build_executor(settings, client)
        orders = []
        for i in range(12):
            body = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}
            key = f"slots-{i}" if i % 2 else None  # half of them keyed: their records are in their partition too
            order = accept(OrderRequest.model_validate(body), idempotency_key=key, partitions=PARTITIONS)
            first = OrderEvent(order.order_id, 1, OrderStatus.PENDING, order.type.value)
            await executor.store.create(order, first, message=execute_order_message(order.order_id))
            orders.append(order)
        assert {partition_of(order.order_id) for order in orders} == set(range(PARTITIONS))
        for order in orders:
            await executor.execute(order.order_id, attempt=1)
        states = [await executor.store.load(order.order_id) for order in orders]
        assert {state.status for state in states if state is not None} == {OrderStatus.CONFIRMED}
        assert refused == []
    finally:
        await client.aclose()


#: One of each resting kind, as a request body: all but the last two fire on the ticks below.
RESTING = {
    "limit": {"type": "limit", "limitPrice": "100"},
    "stop": {"type": "stop", "stopPrice": "155"},
    "trailing_stop": {"type": "trailing_stop", "trailBps": 100},
    "oco": {"type": "oco", "stopPrice": "100", "takeProfitPrice": "158"},
    "sniper": {"type": "sniper", "amount": "0.1", "trigger": {"kind": "listing"}},
    "to_cancel": {"type": "limit", "limitPrice": "1000"},
    "to_expire": {"type": "stop", "stopPrice": "1"},
}


async def _rest(store: OrderStore, kind: str, partition: int) -> Order:
    body = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"} | RESTING[kind]
    order = accept(OrderRequest.model_validate(body))
    order = dataclasses.replace(order, order_id=new_order_id(partition))
    plan = placement(order)
    await store.create(order, plan.first_event, resting=plan.resting, rest_owner="ip:127.0.0.1", max_resting=1000)
    return order


async def test_resting_orders_in_every_partition_run_one_slot_per_command(redis, settings):
    settings = settings.model_copy(update={"partitions": PARTITIONS})
    client = redis_client(settings, auto_pipeline=True)
    refused = audit_slots(client)
    try:
        executor = await build_executor(settings, client)
        store = executor.store
        orders = {(kind, p): await _rest(store, kind, p) for p in range(PARTITIONS) for kind in RESTING}
        tick_ms = int(time.time() * 1000) + 1000
        for p in range(PARTITIONS):
            limits, conditionals, snipers = (
                LimitBook(client, store, p),
                ConditionalBook(client, store, p),
                SniperBook(client, store, p),
            )
            await limits.hand_over_at(await limits.take_crossed("SOL-USDC", Decimal("150")), Decimal("150"))
            ticks = [(f"{tick_ms + i}-0", price) for i, price in enumerate(["150", "160", "150"])]
            await conditionals.hand_over_taken(await conditionals.apply_ticks("SOL-USDC", ticks))
            await snipers.fire(await snipers.take_listing("SOL-USDC"), {"kind": "already_met"})
            cancelled = orders["to_cancel", p]
            state = await store.load(cancelled.order_id)
            assert state is not None
            event = OrderEvent(cancelled.order_id, state.seq + 1, OrderStatus.CANCELLED, cancelled.type.value)
            await store.append(state, event, claim=RestingPlace.from_fields(state.fields))
            await ExpirySweeper(client, store, conditionals.expiries_key).sweep(now_ms=tick_ms + 10**12)

        ended = {"to_cancel": OrderStatus.CANCELLED, "to_expire": OrderStatus.EXPIRED}
        for (kind, _), order in orders.items():
            state = await store.load(order.order_id)
            assert state is not None
            if kind in ended:
                assert state.status is ended[kind], kind
            else:
                assert state.status is OrderStatus.TRIGGERED, kind
                await executor.execute(order.order_id, attempt=1)
                assert (await store.load(order.order_id)).status is OrderStatus.CONFIRMED, kind
        assert refused == []
    finally:
        await client.aclose()
