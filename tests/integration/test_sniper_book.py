"""Resting sniper orders on a real Redis: firing on listing and liquidity, once, against cancels."""

import asyncio
import contextlib

import pytest

from shared import redis_keys
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.store.order_store import ClaimLost, RestingPlace, StaleWrite
from shared.store.sniper_book import SniperBook
from shared.venues.launches import launch_of, schedule
from shared.venues.simulated import SimConfig
from tests.support.orders import event_messages, make_store, place_sniper_order

SIM = SimConfig(seed="sniper-tests", epoch=1_000_000.0)


def venue_event(kind="pool_created", reserves=None, tokens="WIF,SOL"):
    reserves = reserves or {"WIF": "13000", "SOL": "130"}
    return {
        b"id": b"WIF-SOL:raydium:0",
        b"kind": kind.encode(),
        b"dex": b"raydium",
        b"tokens": tokens.encode(),
        **{f"reserve:{k}".encode(): v.encode() for k, v in reserves.items()},
    }


@pytest.fixture
def store(redis):
    return make_store(redis)


@pytest.fixture
def book(redis, store):
    return SniperBook(redis, store)


async def statuses(store, order):
    return [m["status"] for m in await event_messages(store, order)]


async def test_a_listing_event_fires_waiting_orders_of_both_directions_once(redis, store, book):
    buy = await place_sniper_order(store, {"kind": "listing"})
    sell = await place_sniper_order(store, {"kind": "listing"}, tokenIn="WIF", tokenOut="SOL", amount="10")
    other = await place_sniper_order(store, {"kind": "listing"}, tokenOut="MEW")
    assert await book.on_venue_event(venue_event()) == 2
    assert await book.on_venue_event(venue_event()) == 0  # the same event again fires nothing
    for order in (buy, sell):
        assert await statuses(store, order) == ["pending", "waiting", "triggered"]
        triggered = (await event_messages(store, order))[-1]
        assert triggered["venueEvent"]["kind"] == "pool_created" and triggered["trigger"] == {"kind": "listing"}
    assert await statuses(store, other) == ["pending", "waiting"]
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 2
    assert await book.resting_sets() == [redis_keys.sniper_listing("SOL-MEW", 0)]


async def test_liquidity_orders_fire_when_the_reserve_of_token_out_reaches_them(store, book):
    small = await place_sniper_order(store, {"kind": "liquidity", "minLiquidity": "10000"})
    large = await place_sniper_order(store, {"kind": "liquidity", "minLiquidity": "50000"})
    await book.on_venue_event(venue_event(reserves={"WIF": "13000", "SOL": "130"}))
    assert (await statuses(store, small))[-1] == "triggered" and (await statuses(store, large))[-1] == "waiting"
    await book.on_venue_event(venue_event("liquidity_changed", reserves={"WIF": "52000", "SOL": "520"}))
    assert (await statuses(store, large))[-1] == "triggered"


async def test_two_workers_on_the_same_events_fire_each_order_once(redis, store):
    orders = [await place_sniper_order(store, {"kind": "listing"}) for _ in range(50)]
    orders += [
        await place_sniper_order(store, {"kind": "liquidity", "minLiquidity": str(100 * i + 1)}) for i in range(50)
    ]
    books = [SniperBook(redis, store) for _ in range(2)]
    event = venue_event(reserves={"WIF": "100000", "SOL": "1000"})
    await asyncio.gather(*(b.on_venue_event(event) for b in books for _ in range(3)))
    for order in orders:
        assert (await statuses(store, order)).count("triggered") == 1
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 100


async def test_a_cancel_racing_a_fire_has_one_winner(store, book):
    winners = []
    for attempt in range(20):
        order = await place_sniper_order(store, {"kind": "listing"})
        state = await store.load(order.order_id)

        async def cancel(state=state):
            event = OrderEvent(state.order.order_id, state.seq + 1, OrderStatus.CANCELLED, "sniper")
            with contextlib.suppress(ClaimLost, StaleWrite):
                await store.append(state, event, claim=RestingPlace.from_fields(state.fields))

        racers = [cancel(), book.on_venue_event(venue_event())]
        await asyncio.gather(*(racers if attempt % 2 else reversed(racers)))
        seen = await statuses(store, order)
        assert seen[:2] == ["pending", "waiting"] and len(seen) == 3
        winners.append(seen[-1])
    assert set(winners) == {"cancelled", "triggered"}


async def test_the_sweep_fires_orders_whose_condition_already_holds(store, book):
    wif = launch_of("SOL", "WIF", SIM)
    listing = await place_sniper_order(store, {"kind": "listing"})
    deep = await place_sniper_order(store, {"kind": "liquidity", "minLiquidity": "1000000000"})
    assert await book.sweep(SIM, wif.at - 1) == 0
    assert await book.sweep(SIM, wif.at + 1) == 1
    assert (await statuses(store, listing))[-1] == "triggered" and (await statuses(store, deep))[-1] == "waiting"
    assert schedule(SIM)[0].token == "WIF"
