"""Resting limit orders on a real Redis: crossing, exactly-once triggering, cancel races, expiry."""

import asyncio
import contextlib
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from shared import redis_keys
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.domain.limits import order_id_of
from shared.domain.orders import Order, OrderRequest, accept
from shared.domain.partitions import new_order_id, partition_of
from shared.store.expiries import ExpirySweeper
from shared.store.limit_book import LimitBook, resting_place
from shared.store.order_store import ClaimLost, OrderStore, RestingPlace, StaleWrite
from shared.store.resting import HAND_OVER_CHUNK
from tests.support.orders import assert_gapless_and_legal, event_messages, make_store, place_limit_order

PAIR = "SOL-USDC"


@pytest.fixture
def store(redis):
    return make_store(redis)


@pytest.fixture
def book(redis, store):
    return LimitBook(redis, store)


async def queued_order_ids(redis) -> list[str]:
    ids = await redis.lrange(redis_keys.dramatiq_queue(0), 0, -1)
    data = await redis.hmget(redis_keys.dramatiq_messages(0), ids) if ids else []
    return [orjson.loads(raw)["args"][0] for raw in data]


async def test_a_tick_crossing_40_of_100_triggers_exactly_those_in_price_then_time_order(redis, store, book):
    prices = [Decimal("140") + Decimal(i) / 10 for i in range(100)]  # 140.0 … 149.9
    random.Random(7).shuffle(prices)
    orders = [await place_limit_order(store, str(price)) for price in prices]
    crossed = sorted(
        (o for o in orders if o.limit_price <= Decimal("143.95")), key=lambda o: (o.limit_price, o.created_at)
    )
    assert len(crossed) == 40
    members = await book.take_crossed(PAIR, Decimal("143.95"))
    assert [order_id_of(m) for m in members] == [o.order_id for o in crossed]
    assert await book.hand_over_at(members, Decimal("143.95")) == 40
    assert await queued_order_ids(redis) == [str(o.order_id) for o in crossed]
    for order in orders:
        messages = await event_messages(store, order)
        assert_gapless_and_legal(messages)
        expected = ["pending", "waiting", "triggered"] if order in crossed else ["pending", "waiting"]
        assert [m["status"] for m in messages] == expected
    triggered = (await event_messages(store, crossed[0]))[-1]
    assert triggered["triggerPrice"] == "143.95"
    assert (await store.load(crossed[0].order_id)).fields["referencePrice"] == "143.95"
    assert await redis.zcard(redis_keys.limit_handoff(0)) == 0
    assert await book.take_crossed(PAIR, Decimal("139.9")) == []  # a tick below every limit takes nothing


async def test_a_crossing_larger_than_a_chunk_is_handed_over_whole_in_order_and_once(redis, store, book):
    orders = [await place_limit_order(store, f"{140 + i / 1000:.3f}") for i in range(HAND_OVER_CHUNK * 2 + 37)]
    gone = orders[HAND_OVER_CHUNK + 3]  # cancelled-like: no longer waiting when its chunk is loaded
    await redis.hset(redis_keys.order(gone.order_id), "status", "cancelled")
    members = await book.take_crossed(PAIR, Decimal("150"))
    assert len(members) == len(orders)
    assert await book.hand_over_at(members, Decimal("150")) == len(orders) - 1
    assert await queued_order_ids(redis) == [str(o.order_id) for o in orders if o is not gone]
    assert await redis.zcard(redis_keys.limit_handoff(0)) == 0
    assert await book.hand_over_at(members, Decimal("150")) == 0  # a second hand-over of the same: nothing


async def test_two_workers_racing_on_the_same_ticks_trigger_each_order_once(redis, store):
    orders = [await place_limit_order(store, f"{145 + i / 100:.2f}") for i in range(200)]
    books = [LimitBook(redis, store), LimitBook(redis, store)]
    ticks = [Decimal(p) for p in ("145.50", "146.00", "146.50", "147.00")]

    async def worker(book):
        for price in ticks:
            await book.hand_over_at(await book.take_crossed(PAIR, price), price)

    await asyncio.gather(*(worker(book) for book in books))
    queued = await queued_order_ids(redis)
    assert sorted(queued) == sorted(str(o.order_id) for o in orders)  # each once, none missing
    for order in orders:
        assert [m["status"] for m in await event_messages(store, order)].count("triggered") == 1


async def test_a_cancel_racing_a_trigger_has_exactly_one_winner(redis, store, book):
    outcomes = {"cancelled": 0, "triggered": 0}
    for attempt in range(30):
        order = await place_limit_order(store, "150")
        state = await store.load(order.order_id)
        cancel = OrderEvent(order.order_id, state.seq + 1, OrderStatus.CANCELLED, "limit")

        async def cancel_it(state=state, cancel=cancel):
            with contextlib.suppress(ClaimLost, StaleWrite):
                await store.append(state, cancel, claim=RestingPlace.from_fields(state.fields))

        async def trigger_it():
            await book.hand_over_at(await book.take_crossed(PAIR, Decimal("151")), Decimal("151"))

        racers = [cancel_it(), trigger_it()]
        await asyncio.gather(*(racers if attempt % 2 else reversed(racers)))
        statuses = [m["status"] for m in await event_messages(store, order)]
        assert statuses[:2] == ["pending", "waiting"] and len(statuses) == 3
        outcomes[statuses[2]] += 1
    assert sum(outcomes.values()) == 30 and all(outcomes.values())  # both sides won some races
    assert len(await queued_order_ids(redis)) == outcomes["triggered"]


async def test_expiry_ends_resting_orders_and_leaves_the_rest(redis, store, book):
    soon = (datetime.now(UTC) + timedelta(milliseconds=300)).isoformat()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    expiring = await place_limit_order(store, "150", expiresAt=soon)
    staying = await place_limit_order(store, "150", expiresAt=later)
    sweeper = ExpirySweeper(redis, store, redis_keys.limit_expiries(0))
    assert await sweeper.sweep() == 0
    await asyncio.sleep(0.35)
    assert await sweeper.sweep() == 1
    assert [m["status"] for m in await event_messages(store, expiring)][-1] == "expired"
    assert (await store.load(staying.order_id)).status == "waiting"
    assert [order_id_of(m) for m in await book.take_crossed(PAIR, Decimal("151"))] == [staying.order_id]
    assert await redis.zcard(redis_keys.limit_expiries(0)) == 1  # the hand-off claim clears it
    await book.hand_over_at([m for m in await redis.zrange(redis_keys.limit_handoff(0), 0, -1)], Decimal(151))
    assert await redis.zcard(redis_keys.limit_expiries(0)) == 0


async def test_a_hand_off_left_by_a_dead_worker_is_recovered_once(redis, store, book):
    order = await place_limit_order(store, "150")
    members = await book.take_crossed(PAIR, Decimal("150.5"))  # ...and the worker dies here
    assert await book.stranded(older_than_ms=0) == members
    recovered = [await book.hand_over_at(await book.stranded(older_than_ms=0), None) for _ in range(2)]
    assert recovered == [1, 0]
    triggered = (await event_messages(store, order))[-1]
    assert triggered["status"] == "triggered" and triggered["triggerPrice"] == "150"  # its limit: the floor
    assert await queued_order_ids(redis) == [str(order.order_id)]


async def place_limit_order_in(store: OrderStore, partition: int, limit_price: str) -> Order:
    """A resting limit order, as `place_limit_order` places one, with its id in `partition`."""
    body = {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": limit_price}
    order = replace(accept(OrderRequest.model_validate(body)), order_id=new_order_id(partition))
    first = OrderEvent(order.order_id, 1, OrderStatus.PENDING, order.type.value)
    waiting = OrderEvent(order.order_id, 2, OrderStatus.WAITING, order.type.value)
    await store.create(order, first, resting=(waiting, resting_place(order)))
    return order


async def partition_snapshot(redis, partition: int) -> dict:
    """Every limit-book key of the partition, with its members and scores."""
    keys = [key async for key in redis.scan_iter(match=f"limit:{{p{partition}}}:*")]
    return {key: await redis.zrange(key, 0, -1, withscores=True) for key in keys if await redis.type(key) == b"zset"}


async def test_a_take_in_one_partitions_book_never_touches_another_partitions_orders(redis):
    store = OrderStore(redis, retention_s=3600, idempotency_ttl_s=3600, partitions=2)
    in_0 = await place_limit_order_in(store, 0, "150")
    in_1 = await place_limit_order_in(store, 1, "150")
    assert (partition_of(in_0.order_id), partition_of(in_1.order_id)) == (0, 1)
    before = await partition_snapshot(redis, 0)
    assert redis_keys.limit_buckets(PAIR, 0).encode() in before  # the partition-0 order rests in its own book
    order_0_before = await redis.hgetall(redis_keys.order(in_0.order_id))

    book_1 = LimitBook(redis, store, 1)
    members = await book_1.take_crossed(PAIR, Decimal("151"))  # crosses both orders' limits
    assert [order_id_of(m) for m in members] == [in_1.order_id]
    assert await book_1.hand_over_at(members, Decimal("151")) == 1
    assert await book_1.take_crossed(PAIR, Decimal("151")) == []  # partition 1's book is empty now

    assert await partition_snapshot(redis, 0) == before  # partition 0's book untouched...
    assert await redis.hgetall(redis_keys.order(in_0.order_id)) == order_0_before  # ...and its order too
    assert (await store.load(in_0.order_id)).status is OrderStatus.WAITING
    assert (await store.load(in_1.order_id)).status is OrderStatus.TRIGGERED
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 0
    assert await redis.llen(redis_keys.dramatiq_queue(1)) == 1

    book_0 = LimitBook(redis, store, 0)  # and partition 0's own book takes its own order, only
    assert [order_id_of(m) for m in await book_0.take_crossed(PAIR, Decimal("151"))] == [in_0.order_id]
