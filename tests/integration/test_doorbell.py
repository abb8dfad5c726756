"""Housekeeping that sleeps until its next deadline, woken by placements: the doorbell on a real Redis.

The workers' housekeeping loops run here in-process with a doorbell whose cap is far longer than the test,
so an order ends on time only because its placement rang."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.limit_worker.__main__ import housekeeping as limit_housekeeping
from services.sniper_worker.__main__ import MOMENT_GRACE_S, SniperMetrics
from services.sniper_worker.__main__ import housekeeping as sniper_housekeeping
from shared import redis_keys
from shared.observability.orders import OrderOutcomes
from shared.observability.probes import Heartbeat, ServiceProbes
from shared.store.conditional_book import ConditionalBook
from shared.store.doorbell import Doorbell
from shared.store.expiries import ExpirySweeper
from shared.store.limit_book import LimitBook
from shared.store.sniper_book import SniperBook
from shared.venues.simulated import SimConfig
from tests.support.orders import (
    event_messages,
    make_store,
    place_conditional_order,
    place_limit_order,
    place_sniper_order,
)

NEVER_BY_ITSELF_S = 60.0


def in_ms(ms: int) -> str:
    return (datetime.now(UTC) + timedelta(milliseconds=ms)).isoformat()


async def rung(redis, key) -> bool:
    return await redis.lpop(key) is not None


async def test_a_placement_rings_only_when_its_deadline_is_the_new_earliest(redis):
    store = make_store(redis)
    await place_limit_order(store, "150", expiresAt=in_ms(60_000))  # the first deadline
    assert await rung(redis, redis_keys.limit_doorbell(0))
    await place_limit_order(store, "150")  # the default deadline, days away: nothing earlier to do
    await place_limit_order(store, "150", expiresAt=in_ms(120_000))
    assert not await rung(redis, redis_keys.limit_doorbell(0))
    for _ in range(3):
        await place_limit_order(store, "150", expiresAt=in_ms(30_000))
    assert await redis.llen(redis_keys.limit_doorbell(0)) == 1  # rings collapse: one wake-up is enough


async def test_every_sniper_placement_rings(redis):
    store = make_store(redis)
    await place_sniper_order(store, {"kind": "listing"})
    assert await rung(redis, redis_keys.sniper_doorbell(0))
    assert not await rung(redis, redis_keys.limit_doorbell(0))


async def test_a_wait_ends_at_a_ring_at_its_deadline_or_at_a_stop(redis):
    bell = Doorbell(redis, "test:doorbell", max_wait_s=NEVER_BY_ITSELF_S)
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, lambda: asyncio.ensure_future(redis.lpush("test:doorbell", "1")))
    async with asyncio.timeout(5):
        assert await bell.wait(None) is True
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    async with asyncio.timeout(5):
        assert await bell.wait(now_ms + 200) is False
    stop = asyncio.Event()
    loop.call_later(0.1, stop.set)
    async with asyncio.timeout(5):
        assert await bell.wait(None, stop) is False


@pytest.fixture
def probes(settings):
    return ServiceProbes.for_service("test", settings)


@contextlib.asynccontextmanager
async def asleep(housekeeping: Coroutine[Any, Any, None], stop: asyncio.Event) -> AsyncIterator[None]:
    """Run a housekeeping loop until the block ends; the block starts once its first round is done."""
    task = asyncio.create_task(housekeeping)
    await asyncio.sleep(0.3)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def until_status(store, order, status: str) -> None:
    async with asyncio.timeout(10):
        while (await store.load(order.order_id)).status != status:
            await asyncio.sleep(0.02)


async def test_a_limit_order_placed_while_housekeeping_sleeps_expires_on_time(redis, settings, probes):
    store = make_store(redis)
    book, sweeper = LimitBook(redis, store), ExpirySweeper(redis, store, redis_keys.limit_expiries(0))
    bell = Doorbell(redis, redis_keys.limit_doorbell(0), max_wait_s=NEVER_BY_ITSELF_S)
    stop = asyncio.Event()
    outcomes = OrderOutcomes(probes.registry)
    chores = limit_housekeeping("limit", book, recover_nothing, sweeper, bell, stop, outcomes, Heartbeat("chores", 10))
    async with asleep(chores, stop):
        order = await place_limit_order(store, "1", expiresAt=in_ms(300))
        await until_status(store, order, "expired")


async def recover_nothing(stranded: list[str]) -> None:
    raise AssertionError(f"nothing was stranded, yet {stranded}")


async def test_a_conditional_order_placed_while_housekeeping_sleeps_expires_on_time(redis, settings, probes):
    store = make_store(redis)
    book, sweeper = ConditionalBook(redis, store), ExpirySweeper(redis, store, redis_keys.cond_expiries(0))
    bell = Doorbell(redis, redis_keys.cond_doorbell(0), max_wait_s=NEVER_BY_ITSELF_S)
    stop = asyncio.Event()
    outcomes = OrderOutcomes(probes.registry)
    chores = limit_housekeeping(
        "conditional", book, recover_nothing, sweeper, bell, stop, outcomes, Heartbeat("chores", 10)
    )
    async with asleep(chores, stop):
        order = await place_conditional_order(store, "oco", takeProfitPrice="200", stopPrice="1", expiresAt=in_ms(300))
        await until_status(store, order, "expired")
    assert await redis.zcard(redis_keys.cond_take_profits("SOL-USDC", 0)) == 0  # both sides gone with the expiry


async def test_a_sniper_order_whose_condition_already_holds_fires_when_placed(redis, settings, probes):
    store = make_store(redis)
    book, sweeper = SniperBook(redis, store), ExpirySweeper(redis, store, redis_keys.sniper_expiries(0))
    bell = Doorbell(redis, redis_keys.sniper_doorbell(0), max_wait_s=NEVER_BY_ITSELF_S)
    now = datetime.now(UTC).timestamp()
    # Every launch and liquidity step an hour ago: after the start-up sweep, nothing is due but a ring.
    sim = SimConfig(seed="s", epoch=now - 3600, launch_first_s=0, launch_interval_s=1, liquidity_step_s=1)
    stop = asyncio.Event()
    metrics = SniperMetrics(probes)
    async with asleep(sniper_housekeeping(book, sweeper, bell, sim, stop, metrics, Heartbeat("chores", 10)), stop):
        order = await place_sniper_order(store, {"kind": "listing"})  # WIF listed an hour ago
        await until_status(store, order, "triggered")


async def test_a_listing_no_event_announced_is_swept_a_grace_after_its_moment(redis, settings, probes):
    """With no quote stream to publish the listing, housekeeping fires the order itself, MOMENT_GRACE_S after
    the launch schedule says WIF listed: late enough for the venue event to have fired it first."""
    store = make_store(redis)
    book, sweeper = SniperBook(redis, store), ExpirySweeper(redis, store, redis_keys.sniper_expiries(0))
    bell = Doorbell(redis, redis_keys.sniper_doorbell(0), max_wait_s=NEVER_BY_ITSELF_S)
    listed_at = datetime.now(UTC).timestamp() + 1.0  # WIF is launch slot 0: listed launch_first_s after epoch
    sim = SimConfig(seed="s", epoch=listed_at - 30, launch_first_s=30, launch_interval_s=3600, liquidity_step_s=3600)
    order = await place_sniper_order(store, {"kind": "listing"})
    await redis.delete(redis_keys.sniper_doorbell(0))  # placed before the loop started: the start-up sweep sees it
    stop = asyncio.Event()
    metrics = SniperMetrics(probes)
    async with asleep(sniper_housekeeping(book, sweeper, bell, sim, stop, metrics, Heartbeat("chores", 10)), stop):
        await until_status(store, order, "triggered")
        fired_at = datetime.now(UTC).timestamp()
    assert fired_at >= listed_at + MOMENT_GRACE_S
    assert (await event_messages(store, order))[-1]["venueEvent"]["kind"] == "already_met"
