"""The execution worker as a real process on a real Redis: retries, dead letters, duplicates, crashes."""

import asyncio

import orjson
import pytest

from shared import redis_keys
from shared.execution.messages import execute_order_message
from shared.venues.ledger import order_transactions_key
from tests.support.orders import (
    assert_gapless_and_legal,
    event_messages,
    make_store,
    place_market_order,
    wait_for,
)
from tests.support.processes import fast_engine


@pytest.fixture
def engine(redis_url, database_url, tmp_path):
    engine = fast_engine(redis_url, database_url, tmp_path, "worker-tests")
    yield engine
    engine.stop_all()


async def executions(redis, order) -> int:
    return await redis.scard(order_transactions_key(str(order.order_id)))


async def test_transient_failures_are_retried_then_failed_and_dead_lettered(redis, engine):
    store = make_store(redis)
    order = await place_market_order(store)
    engine.start("execution-worker", SIM_FAILURE_RATE="1")
    state = await wait_for(store, order, timeout=30)
    messages = await event_messages(store, order)
    assert [m["status"] for m in messages] == ["pending", "failed"]
    assert messages[-1]["attempt"] == 3 and messages[-1]["error"] == "venue_unavailable"
    assert "3 attempts" in messages[-1]["errorMessage"]
    assert state.fields["error"] == "venue_unavailable"
    for _ in range(100):  # the nack lands just after the failed event
        dead = await redis.hvals(f"{redis_keys.dramatiq_dead_letters(0)}.msgs")
        if dead:
            break
        await asyncio.sleep(0.05)
    assert [orjson.loads(m)["args"] for m in dead] == [[str(order.order_id)]]
    assert orjson.loads(dead[0])["options"]["retries"] == 2  # the third delivery was the last
    assert await executions(redis, order) == 0


async def test_a_message_delivered_twice_executes_once(redis, engine):
    store = make_store(redis)
    order = await place_market_order(store)
    duplicate = execute_order_message(order.order_id)
    await redis.hset(redis_keys.dramatiq_messages(0), duplicate.redis_message_id, duplicate.data)
    await redis.rpush(redis_keys.dramatiq_queue(0), duplicate.redis_message_id)
    engine.start("execution-worker", SIM_LATENCY_SCALE="0.2")
    await wait_for(store, order, timeout=30)
    messages = await event_messages(store, order)
    assert [m["status"] for m in messages] == ["pending", "routing", "building", "submitted", "confirmed"]
    assert_gapless_and_legal(messages)
    assert await executions(redis, order) == 1
    for _ in range(100):  # both deliveries end acked, none dead-lettered
        if await redis.hlen(redis_keys.dramatiq_messages(0)) == 0:
            break
        await asyncio.sleep(0.05)
    assert await redis.hlen(redis_keys.dramatiq_messages(0)) == 0
    assert await redis.zcard(redis_keys.dramatiq_dead_letters(0)) == 0


@pytest.mark.parametrize("kill_when", ["lease_taken", "submitted"])
async def test_a_worker_killed_mid_order_is_resumed_and_executes_once(redis, engine, kill_when):
    store = make_store(redis)
    recovery = {"WORKER_HEARTBEAT_TIMEOUT_MS": "1000", "ORDER_LEASE_MS": "1000"}
    first = engine.start("execution-worker", SIM_LATENCY_SCALE="1", **recovery)
    order = await place_market_order(store)
    if kill_when == "lease_taken":
        while not await redis.exists(redis_keys.order_lease(order.order_id)):
            await asyncio.sleep(0.005)
    else:
        await wait_for(store, order, statuses={"submitted"}, timeout=20)
    first.kill()
    before = await store.load(order.order_id)
    assert not before.terminal

    engine.start("execution-worker", SIM_LATENCY_SCALE="1", WORKER_MAINTENANCE_CHANCE="1000000", **recovery)
    await wait_for(store, order, timeout=40)
    messages = await event_messages(store, order)
    assert_gapless_and_legal(messages)
    assert [m["status"] for m in messages].count("confirmed") == 1
    assert messages[-1]["status"] == "confirmed"
    assert await executions(redis, order) == 1
