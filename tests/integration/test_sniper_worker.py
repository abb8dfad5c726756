"""The sniper worker as a real process: it acts on venue events it missed while it was down."""

import asyncio

import pytest

from shared import redis_keys
from tests.support.orders import event_messages, make_store, place_sniper_order
from tests.support.processes import Engine


@pytest.fixture
def engine(redis_url, database_url, tmp_path):
    # Launches far in the future: only the events this test publishes can fire anything.
    engine = Engine(
        env={"REDIS_URL": redis_url, "DATABASE_URL": database_url, "SIM_LAUNCH_FIRST_S": "100000"}, log_dir=tmp_path
    )
    yield engine
    engine.stop_all()


async def test_an_event_published_while_the_worker_was_down_fires_once_it_is_back(redis, engine):
    store = make_store(redis)
    engine.start("sniper-worker").kill()
    order = await place_sniper_order(store, {"kind": "liquidity", "minLiquidity": "5000"})
    await redis.xadd(
        redis_keys.VENUE_EVENTS_STREAM,
        {
            "id": "WIF-SOL:meteora:0",
            "kind": "pool_created",
            "dex": "meteora",
            "tokens": "WIF,SOL",
            "at": "0",
            "reserve:WIF": "13000",
            "reserve:SOL": "130",
        },
    )
    engine.start("sniper-worker")
    async with asyncio.timeout(20):
        while (await store.load(order.order_id)).status != "triggered":
            await asyncio.sleep(0.1)
    triggered = (await event_messages(store, order))[-1]
    assert triggered["venueEvent"]["id"] == "WIF-SOL:meteora:0"
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 1
