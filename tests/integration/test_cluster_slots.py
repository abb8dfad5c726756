"""A market order's whole life names one hash slot per command, as a Redis Cluster requires (docs/sharding.md):
driven through the real store, executor, simulated venues and chain on the suite's Redis, every command is
checked as a cluster would check it."""

from __future__ import annotations

from services.execution_worker.__main__ import build_executor
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.domain.orders import OrderRequest, accept
from shared.domain.partitions import partition_of
from shared.execution.messages import execute_order_message
from shared.redis_client import redis_client
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
