"""Conditional orders with the price-trigger worker as a real process: two replicas, a killed worker, ticks
published while it was down, and a hand-off it left behind each end with every order triggered exactly once."""

from __future__ import annotations

import asyncio

import pytest

from shared import redis_keys
from shared.store.conditional_book import ConditionalBook, trail_state
from tests.support.orders import event_messages, make_store, place_conditional_order
from tests.support.processes import Engine
from tests.support.ticks import TickIds


@pytest.fixture
def engine(redis_url, database_url, tmp_path):
    engine = Engine(env={"REDIS_URL": redis_url, "DATABASE_URL": database_url}, log_dir=tmp_path)
    yield engine
    engine.stop_all()


async def tick(redis, *prices: str) -> None:
    for price in prices:
        await redis.xadd(redis_keys.TICKS_STREAM, {"pair": "SOL-USDC", "price": price, "dex": "raydium", "ts": "0"})


async def statuses(store, orders) -> list[list[str]]:
    return [[m["status"] for m in await event_messages(store, order)] for order in orders]


async def until_triggered(redis, store, orders, *, keep_ticking: tuple[str, ...] = (), timeout=20.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if keep_ticking:
                await tick(redis, *keep_ticking)
            if all(s[-1] == "triggered" for s in await statuses(store, orders)):
                return
            await asyncio.sleep(0.2)


async def until_reading(redis) -> None:
    """A started worker reads from the stream's end: wait until it has applied a tick, so the next count."""
    async with asyncio.timeout(20):
        while not await redis.get(redis_keys.COND_TICKS_CURSOR):
            await tick(redis, "100")
            await asyncio.sleep(0.1)


async def mixed_orders(store, count: int) -> list:
    orders = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            orders.append(await place_conditional_order(store, "stop", stopPrice=f"{95 - i / 100:.2f}"))
        elif kind == 1:
            orders.append(await place_conditional_order(store, "oco", takeProfitPrice="200", stopPrice="96"))
        else:
            orders.append(await place_conditional_order(store, "trailing_stop", trailBps=100 + i))
    return orders


async def test_two_worker_processes_on_the_same_ticks_trigger_each_order_once(redis, engine):
    store = make_store(redis)
    engine.start("limit-worker")
    engine.start("limit-worker")
    await until_reading(redis)
    orders = await mixed_orders(store, 90)
    await tick(redis, "100", "101")  # every trailing stop armed by now (high 101)
    await until_triggered(redis, store, orders, keep_ticking=("80",))
    assert all(s == ["pending", "waiting", "triggered"] for s in await statuses(store, orders))
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 90


async def test_a_restarted_worker_applies_the_ticks_it_missed_in_order(redis, engine):
    """While the worker is down the price rises to 120 and falls to 113: the trailing stop fires on its high."""
    store = make_store(redis)
    worker = engine.start("limit-worker")
    await until_reading(redis)
    order = await place_conditional_order(store, "trailing_stop", trailBps=500)
    await tick(redis, "100")
    state = await store.load(order.order_id)
    async with asyncio.timeout(10):
        while not (await trail_state(redis, state)).armed:
            await asyncio.sleep(0.05)
    worker.kill()
    await tick(redis, "120", "113")  # 113 is below 120 × 0.95 = 114, far above 100 × 0.95
    engine.start("limit-worker")
    await until_triggered(redis, store, [order])
    triggered = (await event_messages(store, order))[-1]
    assert (triggered["trigger"], triggered["triggerPrice"], triggered["highWaterMark"]) == ("trail", "113", "120")


async def test_orders_taken_but_not_handed_over_are_recovered_once(redis, engine):
    store = make_store(redis)
    orders = await mixed_orders(store, 6)
    book = ConditionalBook(redis, store)
    ids = TickIds()
    await book.apply_ticks("SOL-USDC", [(ids.next(), "100"), (ids.next(), "101"), (ids.next(), "50")])  # then it died
    assert await redis.zcard(redis_keys.cond_handoff(0)) == 6
    engine.start("limit-worker")
    async with asyncio.timeout(20):
        while await redis.zcard(redis_keys.cond_handoff(0)):
            await asyncio.sleep(0.1)
    assert all(s == ["pending", "waiting", "triggered"] for s in await statuses(store, orders))
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 6
