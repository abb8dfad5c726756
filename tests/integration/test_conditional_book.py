"""The conditional book against real Redis: price paths we write tick by tick fire each order on exactly the
tick the contract says, and on random paths it fires exactly what the one-order-at-a-time reference fires."""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared import redis_keys
from shared.domain.conditional import Condition, Taken
from shared.domain.limits import order_id_of
from shared.domain.orders import Order
from shared.store.conditional_book import ConditionalBook, trail_state
from shared.store.order_store import ClaimLost, OrderStore
from shared.store.scripts import TakeConditionalArgs, lua_source, run
from tests.support.conditional_reference import ConditionalTerms, ReferenceBook
from tests.support.orders import cancel_resting, event_messages, make_store, place_conditional_order
from tests.support.ticks import TickIds

PAIR = "SOL-USDC"


class Path:
    """Feeds one pair's book ticks with increasing stream ids, as the quote stream would."""

    def __init__(self, book: ConditionalBook) -> None:
        self.book = book
        self.ids = TickIds()

    async def tick(self, *prices: str) -> list[Taken]:
        return await self.book.apply_ticks(PAIR, [(self.ids.next(), price) for price in prices])


def fired_ids(taken: list[Taken]) -> list:
    return [order_id_of(t.member) for t in taken]


@pytest.fixture
def store(redis) -> OrderStore:
    return make_store(redis)


@pytest.fixture
def book(redis, store) -> ConditionalBook:
    return ConditionalBook(redis, store)


@pytest.fixture
def path(book) -> Path:
    return Path(book)


async def test_a_stop_fires_on_the_first_tick_at_or_below_its_price_and_not_one_earlier(store, path):
    order = await place_conditional_order(store, "stop", stopPrice="95")
    for price in ("100", "97", "95.01", "120"):
        assert await path.tick(price) == []
    [fired] = await path.tick("95")
    assert (order_id_of(fired.member), fired.condition, fired.price) == (order.order_id, Condition.STOP, Decimal(95))
    assert await path.tick("90") == []  # once


async def test_a_gap_through_the_stop_fires_at_the_price_it_gapped_to(store, path):
    order = await place_conditional_order(store, "stop", stopPrice="95")
    await path.tick("100")
    [fired] = await path.tick("80")
    assert (order_id_of(fired.member), fired.price) == (order.order_id, Decimal(80))


async def test_stops_at_one_tick_fire_highest_stop_first_then_oldest(store, path):
    low = await place_conditional_order(store, "stop", stopPrice="90")
    first_high = await place_conditional_order(store, "stop", stopPrice="95")
    second_high = await place_conditional_order(store, "stop", stopPrice="95")
    assert fired_ids(await path.tick("89")) == [first_high.order_id, second_high.order_id, low.order_id]


async def test_a_trailing_stop_arms_at_once_follows_new_highs_and_fires_on_its_level(store, path):
    order = await place_conditional_order(store, "trailing_stop", trailBps=500)
    assert await path.tick("100") == []  # armed here: high 100, level 95
    assert await path.tick("96", "110", "105") == []  # high 110, level 104.5
    assert await path.tick("104.51") == []
    [fired] = await path.tick("104.5")
    assert (order_id_of(fired.member), fired.condition) == (order.order_id, Condition.TRAIL)
    assert (fired.price, fired.high_water_mark) == (Decimal("104.5"), Decimal("110"))


async def test_a_trailing_stop_never_fires_on_the_tick_that_arms_it(store, path):
    await place_conditional_order(store, "trailing_stop", trailBps=1)
    assert await path.tick("100") == []
    assert len(await path.tick("99.99")) == 1


async def test_activation_arms_on_the_first_tick_at_or_above_it_and_trails_from_there(store, path):
    order = await place_conditional_order(store, "trailing_stop", trailBps=1000, activationPrice="120")
    assert await path.tick("110", "100", "90", "119.99") == []  # a 25 % fall before activation does nothing
    assert await path.tick("120", "125") == []  # armed at 120, high 125, level 112.5
    [fired] = await path.tick("112.5")
    assert (order_id_of(fired.member), fired.high_water_mark) == (order.order_id, Decimal(125))


async def test_a_high_in_the_same_batch_as_the_drop_counts(store, path):
    """A worker behind by several ticks still sees the high that came before the drop."""
    order = await place_conditional_order(store, "trailing_stop", trailBps=500)
    await path.tick("100")
    [fired] = await path.tick("120", "113")  # high 120, level 114: 113 fires; 113 alone would not (level 95)
    assert (order_id_of(fired.member), fired.high_water_mark, fired.price) == (order.order_id, 120, Decimal(113))


async def test_an_oco_takes_profit_and_its_stop_side_is_gone(redis, store, path):
    order = await place_conditional_order(store, "oco", takeProfitPrice="110", stopPrice="90")
    [fired] = await path.tick("100", "110")
    assert (order_id_of(fired.member), fired.condition) == (order.order_id, Condition.TAKE_PROFIT)
    assert await path.tick("80") == []
    assert await redis.zcard(redis_keys.cond_stops(PAIR, 0)) == 0


async def test_an_oco_stop_fires_first_and_the_take_profit_side_never_does(redis, store, path):
    order = await place_conditional_order(store, "oco", takeProfitPrice="110", stopPrice="90")
    [fired] = await path.tick("100", "90", "111")  # one batch: the stop came first
    assert (order_id_of(fired.member), fired.condition, fired.price) == (order.order_id, Condition.STOP, 90)
    assert await redis.zcard(redis_keys.cond_take_profits(PAIR, 0)) == 0


async def test_a_take_profit_and_a_stop_in_one_tick_both_fire(store, path):
    oco = await place_conditional_order(store, "oco", takeProfitPrice="99", stopPrice="90")
    stop = await place_conditional_order(store, "stop", stopPrice="101")
    taken = await path.tick("100")
    assert {(order_id_of(t.member), t.condition) for t in taken} == {
        (oco.order_id, Condition.TAKE_PROFIT),
        (stop.order_id, Condition.STOP),
    }


async def test_ticks_already_applied_are_skipped_so_replicas_and_restarts_fire_once(book, store):
    await place_conditional_order(store, "stop", stopPrice="95")
    await place_conditional_order(store, "trailing_stop", trailBps=500)
    ids = TickIds()
    ticks = [(ids.next(), "100"), (ids.next(), "94")]
    first = await book.apply_ticks(PAIR, ticks)
    assert len(first) == 2
    assert await book.apply_ticks(PAIR, ticks) == []  # a second replica, or a restart reading them again
    assert await book.apply_ticks(PAIR, [(ids.earlier(5), "50"), ticks[-1]]) == []  # older or equal ids


async def test_a_replayed_tick_from_before_an_order_was_placed_never_fires_or_arms_it(store, book):
    """A restarted worker replays the ticks it missed; an order placed meanwhile waits for prices after it."""
    ids = TickIds()
    before = [(ids.next(), "100")]
    await asyncio.sleep(0.005)
    stop = await place_conditional_order(store, "stop", stopPrice="200")
    oco = await place_conditional_order(store, "oco", takeProfitPrice="90", stopPrice="50")
    trail = await place_conditional_order(store, "trailing_stop", trailBps=100)
    await asyncio.sleep(0.005)
    assert await book.apply_ticks(PAIR, before) == []  # crosses the stop and the take-profit, from before them
    state = await store.load(trail.order_id)
    assert not (await trail_state(book.redis, state)).armed
    fired = await book.apply_ticks(PAIR, [(ids.next(), "100")])
    assert {order_id_of(t.member) for t in fired} == {stop.order_id, oco.order_id}
    assert (await trail_state(book.redis, state)).armed


async def test_cancel_of_an_oco_removes_both_sides_and_loses_to_a_trigger_that_came_first(redis, store, book, path):
    cancelled = await place_conditional_order(store, "oco", takeProfitPrice="110", stopPrice="90")
    await cancel_resting(store, cancelled)
    assert await redis.zcard(redis_keys.cond_stops(PAIR, 0)) == 0
    assert await redis.zcard(redis_keys.cond_take_profits(PAIR, 0)) == 0

    fired = await place_conditional_order(store, "oco", takeProfitPrice="110", stopPrice="90")
    await path.tick("110")  # taken into the hand-off...
    with pytest.raises(ClaimLost):
        await cancel_resting(store, fired)  # ...so the cancel loses


async def test_cancel_of_a_trailing_stop_removes_it_armed_or_not(redis, store, path):
    waiting = await place_conditional_order(store, "trailing_stop", trailBps=300, activationPrice="200")
    armed = await place_conditional_order(store, "trailing_stop", trailBps=300)
    await path.tick("100")
    for order in (waiting, armed):
        await cancel_resting(store, order)
    assert await redis.exists(redis_keys.cond_trail(PAIR, 300, 0), redis_keys.cond_activations(PAIR, 0)) == 0
    assert await redis.zcard(redis_keys.cond_trail_widths(PAIR, 0)) == 0
    assert await path.tick("1") == []


async def test_hand_over_records_the_condition_price_and_high_on_triggered(store, book, path):
    order = await place_conditional_order(store, "trailing_stop", trailBps=500)
    await path.tick("100", "120")
    taken = await path.tick("110")
    assert len(await book.hand_over_taken(taken)) == 1
    triggered = (await event_messages(store, order))[-1]
    assert triggered["status"] == "triggered"
    assert (triggered["trigger"], triggered["triggerPrice"], triggered["highWaterMark"]) == ("trail", "110", "120")
    assert triggered["trailBps"] == 500


async def test_a_stranded_hand_off_is_recovered_with_what_fired_it(redis, store, book, path):
    order = await place_conditional_order(store, "oco", takeProfitPrice="110", stopPrice="90")
    await path.tick("89")  # a worker took it and died before handing it over
    stranded = await book.stranded(older_than_ms=-1000)
    assert len(await book.recover(stranded)) == 1
    triggered = (await event_messages(store, order))[-1]
    assert (triggered["trigger"], triggered["triggerPrice"]) == ("stop", "89")
    assert await redis.zcard(redis_keys.cond_handoff(0)) == 0
    assert await book.recover(stranded) == []  # once


async def test_the_trailing_state_shows_the_live_high_and_level(redis, store, path):
    order = await place_conditional_order(store, "trailing_stop", trailBps=250, activationPrice="105")
    state = await store.load(order.order_id)
    assert (await trail_state(redis, state)).view() == {"armed": False, "highWaterMark": None, "stopLevel": None}
    await path.tick("100", "106", "104", "112", "111")
    assert (await trail_state(redis, state)).view() == {"armed": True, "highWaterMark": "112", "stopLevel": "109.2"}


async def test_the_record_stack_keeps_only_what_armed_orders_need(redis, store, path):
    await path.tick(*(str(1000 - i) for i in range(200)))  # a long fall with nothing armed
    assert await redis.zcard(redis_keys.cond_highs(PAIR, 0)) == 1
    await place_conditional_order(store, "trailing_stop", trailBps=5000)
    await path.tick(*(str(700 - i) for i in range(50)))
    assert await redis.zcard(redis_keys.cond_highs(PAIR, 0)) == 50  # every record since it armed
    assert await redis.zcard(redis_keys.cond_highs_at(PAIR, 0)) == 50


async def book_snapshot(redis, partition: int) -> dict:
    """Every conditional-book key of the partition (and the hand-off set), with what it holds."""
    dumped = {}
    async for key in redis.scan_iter(match=f"cond:{{p{partition}}}:*"):
        kind = await redis.type(key)
        if kind == b"zset":
            dumped[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == b"hash":
            dumped[key] = await redis.hgetall(key)
        else:
            dumped[key] = await redis.lrange(key, 0, -1)
    return dumped


async def test_a_width_placed_between_the_widths_read_and_the_script_makes_it_change_nothing(redis, store, book, path):
    """The script is given the trail sets of the widths the caller read; an order of a new width placed in
    between is in a set it was not given: it answers -1 and leaves everything as it was, for a retry."""
    stop = await place_conditional_order(store, "stop", stopPrice="95")
    trail = await place_conditional_order(store, "trailing_stop", trailBps=500)
    await path.tick("100")  # the trailing stop arms: high 100, level 95
    stale = [(redis_keys.cond_trail(PAIR, 500, 0), "500")]  # the widths as a worker read them...
    late = await place_conditional_order(store, "trailing_stop", trailBps=300)  # ...then a new width is placed
    assert await redis.zrange(redis_keys.cond_trail_widths(PAIR, 0), 0, -1) == [b"300", b"500"]
    await asyncio.sleep(0.005)
    tick_state = await redis.hgetall(redis_keys.cond_ticks(PAIR, 0))
    assert tick_state  # the first tick was applied
    before = await book_snapshot(redis, 0)

    script = redis.register_script(lua_source(TakeConditionalArgs.SCRIPT))
    args = TakeConditionalArgs(
        stops=redis_keys.cond_stops(PAIR, 0),
        take_profits=redis_keys.cond_take_profits(PAIR, 0),
        activations=redis_keys.cond_activations(PAIR, 0),
        trail_widths=redis_keys.cond_trail_widths(PAIR, 0),
        records_by_price=redis_keys.cond_highs(PAIR, 0),
        records_by_tick=redis_keys.cond_highs_at(PAIR, 0),
        tick_state=redis_keys.cond_ticks(PAIR, 0),
        hand_off_set=redis_keys.cond_handoff(0),
        now_ms=int(datetime.now(UTC).timestamp() * 1000),
        trails=stale,
        ticks=[(path.ids.next(), "120"), (path.ids.next(), "90")],  # would arm the late one, then fire all three
    )
    assert await run(script, args) == -1
    assert await redis.hgetall(redis_keys.cond_ticks(PAIR, 0)) == tick_state  # no tick applied
    assert await book_snapshot(redis, 0) == before  # nothing armed, taken or trimmed
    assert await redis.zcard(redis_keys.cond_handoff(0)) == 0
    assert await redis.exists(redis_keys.cond_trail(PAIR, 300, 0)) == 1

    # The book reads the widths again and applies the same ticks: they fire as if the stale call never ran.
    fired = await book.apply_ticks(PAIR, args.ticks)
    assert {(order_id_of(t.member), t.condition, t.high_water_mark) for t in fired} == {
        (stop.order_id, Condition.STOP, None),
        (trail.order_id, Condition.TRAIL, Decimal(120)),
        (late.order_id, Condition.TRAIL, Decimal(120)),  # armed at 120 (level 116.4): its width's set was read
    }


def _terms(order: Order) -> ConditionalTerms:
    return ConditionalTerms(
        order.order_id, order.stop_price, order.take_profit_price, order.trail_bps, order.activation_price
    )


@pytest.mark.parametrize("seed", range(6))
async def test_on_random_paths_the_book_fires_what_the_reference_fires_tick_for_tick(store, path, seed):
    rng = random.Random(seed)
    reference = ReferenceBook()

    async def place_some(price: Decimal) -> None:
        for _ in range(rng.randint(0, 6)):
            kind = rng.choice(["stop", "trailing_stop", "oco"])
            below, above = price * Decimal(rng.uniform(0.8, 1)), price * Decimal(rng.uniform(1, 1.2))
            if kind == "stop":
                fields = {"stopPrice": f"{below:.2f}"}
            elif kind == "oco":
                fields = {"stopPrice": f"{below:.2f}", "takeProfitPrice": f"{above + Decimal('0.01'):.2f}"}
            else:
                fields = {"trailBps": rng.choice([50, 100, 250, 1000])}
                if rng.random() < 0.5:
                    fields["activationPrice"] = f"{above:.2f}"
            order = await place_conditional_order(store, kind, **fields)
            reference.place(_terms(order))

    price = Decimal(100)
    for _ in range(300):
        await place_some(price)
        price = max(Decimal("1.00"), (price * Decimal(1 + rng.gauss(0, 0.01))).quantize(Decimal("0.01")))
        expected = {f.order_id: f for f in reference.tick(price)}
        got = await path.tick(str(price))
        assert {order_id_of(t.member) for t in got} == set(expected), price
        for taken in got:
            want = expected[order_id_of(taken.member)]
            assert (taken.condition, taken.price, taken.high_water_mark) == (
                want.condition,
                want.price,
                want.high_water_mark,
            )


@pytest.mark.parametrize("ender", ["cancel", "expiry"])
async def test_a_cancel_or_an_expiry_racing_the_trigger_leaves_each_order_ended_exactly_one_way(
    redis, store, book, path, ender
):
    from shared.store.expiries import ExpirySweeper
    from shared.store.order_store import StaleWrite

    orders = []
    for i in range(60):
        kind = ("stop", "oco", "trailing_stop")[i % 3]
        fields = {"stop": {"stopPrice": "95"}, "oco": {"takeProfitPrice": "120", "stopPrice": "95"},
                  "trailing_stop": {"trailBps": 100}}[kind]  # fmt: skip
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        orders.append(await place_conditional_order(store, kind, expiresAt=tomorrow, **fields))
    await path.tick("100")  # the trailing stops arm

    async def trigger() -> None:
        await book.hand_over_taken(await path.tick("90"))

    async def end_them() -> None:
        if ender == "expiry":
            far_future_ms = 5_000_000_000_000
            await ExpirySweeper(redis, store, redis_keys.cond_expiries(0)).sweep(now_ms=far_future_ms)
            return
        for order in orders:
            with contextlib.suppress(ClaimLost, StaleWrite, AssertionError):
                await cancel_resting(store, order)

    await asyncio.gather(trigger(), end_them())
    await book.recover(await book.stranded(older_than_ms=-1000))  # what the race left in the hand-off
    ends = [[m["status"] for m in await event_messages(store, o)][2:] for o in orders]
    ended_by = {"cancel": "cancelled", "expiry": "expired"}[ender]
    assert all(end in (["triggered"], [ended_by]) for end in ends), ends
    triggered = sum(end == ["triggered"] for end in ends)
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == triggered
    for key in (redis_keys.cond_stops(PAIR, 0), redis_keys.cond_take_profits(PAIR, 0), redis_keys.cond_handoff(0)):
        assert await redis.zcard(key) == 0, key
