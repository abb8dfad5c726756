"""The limit worker as a real process: resting orders survive its crash, stranded hand-offs recover."""

import asyncio
from decimal import Decimal

import pytest

from shared import redis_keys
from shared.store.limit_book import LimitBook
from tests.support.orders import event_messages, make_store, place_limit_order
from tests.support.processes import Engine


@pytest.fixture
def engine(redis_url, database_url, tmp_path):
    engine = Engine(env={"REDIS_URL": redis_url, "DATABASE_URL": database_url}, log_dir=tmp_path)
    yield engine
    engine.stop_all()


async def tick_until_triggered(redis, store, orders, price="151", timeout=20.0):
    async with asyncio.timeout(timeout):
        while True:
            await redis.xadd(redis_keys.TICKS_STREAM, {"pair": "SOL-USDC", "price": price, "dex": "raydium", "ts": "0"})
            states = [await store.load(o.order_id) for o in orders]
            if all(s.status == "triggered" for s in states):
                return
            await asyncio.sleep(0.2)


async def test_resting_orders_survive_a_killed_worker_and_trigger_once_after_restart(redis, engine):
    store = make_store(redis)
    engine.start("limit-worker").kill()  # it dies with orders resting...
    orders = [await place_limit_order(store, "150") for _ in range(5)]
    engine.start("limit-worker")  # ...and its successor finds them all
    await tick_until_triggered(redis, store, orders)
    for order in orders:
        assert [m["status"] for m in await event_messages(store, order)] == ["pending", "waiting", "triggered"]
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 5


async def test_orders_taken_but_not_handed_over_are_recovered_once(redis, engine):
    store = make_store(redis)
    orders = [await place_limit_order(store, "150") for _ in range(3)]
    await LimitBook(redis, store).take_crossed("SOL-USDC", Decimal("150"))  # a worker died right after this
    engine.start("limit-worker")
    async with asyncio.timeout(20):
        while await redis.zcard(redis_keys.limit_handoff(0)):
            await asyncio.sleep(0.1)
    for order in orders:
        assert [m["status"] for m in await event_messages(store, order)] == ["pending", "waiting", "triggered"]
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 3


async def test_two_limit_worker_processes_on_the_same_ticks_trigger_each_order_once(redis, engine):
    store = make_store(redis)
    engine.start("limit-worker")
    engine.start("limit-worker")
    orders = [await place_limit_order(store, f"{150 + i / 100:.2f}") for i in range(100)]
    await tick_until_triggered(redis, store, orders, price="152")
    for order in orders:
        assert [m["status"] for m in await event_messages(store, order)].count("triggered") == 1
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 100
