"""The Redis order store against a real Redis: atomic acceptance, idempotency, back-pressure, CAS.

Every case runs on a plain client and on the auto-pipelining one the execution worker uses.
"""

from decimal import Decimal

import orjson
import pytest

from shared import redis_keys
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import IllegalTransition, OrderStatus
from shared.domain.orders import OrderRequest, accept
from shared.execution.messages import execute_order_message
from shared.redis_client import redis_client
from shared.store.leases import OrderLeases
from shared.store.order_store import CreateOutcome, LeaseLost, OrderStore, StaleWrite


def new_order(key=None, **fields):
    request = OrderRequest.model_validate({"tokenIn": "SOL", "tokenOut": "USDC", "amount": "2", **fields})
    return accept(request, idempotency_key=key)


def pending(order):
    return OrderEvent(order.order_id, 1, OrderStatus.PENDING, order.type.value)


@pytest.fixture(params=["plain", "auto-pipelined"])
async def store(request, redis, redis_url):
    if request.param == "plain":
        yield OrderStore(redis, retention_s=60, idempotency_ttl_s=60)
        return
    client = redis_client(redis_url, auto_pipeline=True)
    yield OrderStore(client, retention_s=60, idempotency_ttl_s=60)
    await client.aclose()


async def test_accepting_writes_state_event_stream_entry_and_message_together(store, redis):
    order = new_order(userId="alice")
    message = execute_order_message(order.order_id)
    result = await store.create(order, pending(order), message=message)
    assert result.outcome is CreateOutcome.CREATED
    state = await store.load(order.order_id)
    assert (state.status, state.seq, state.order.amount) == (OrderStatus.PENDING, 1, Decimal("2"))
    [event] = await store.events(order.order_id)
    assert orjson.loads(event)["seq"] == 1
    [(_, fields)] = await redis.xrange(redis_keys.events_stream(0))
    assert fields[b"o"].decode() == str(order.order_id) and fields[b"u"] == b"alice" and b"s" in fields
    assert await redis.lrange(redis_keys.dramatiq_queue(0), 0, -1) == [message.redis_message_id.encode()]
    assert await redis.hget(redis_keys.dramatiq_messages(0), message.redis_message_id) == message.data


async def test_same_key_same_body_replays_and_different_body_conflicts(store):
    first = new_order("key-1")
    assert (await store.create(first, pending(first), body_hash="h1")).outcome is CreateOutcome.CREATED
    again = new_order("key-1")
    replay = await store.create(again, pending(again), body_hash="h1")
    assert (replay.outcome, replay.order_id) == (CreateOutcome.REPLAYED, first.order_id)
    assert await store.load(again.order_id) is None
    other = new_order("key-1")
    assert (await store.create(other, pending(other), body_hash="h2")).outcome is CreateOutcome.KEY_CONFLICT


async def test_a_full_queue_refuses_and_leaves_nothing_behind(store, redis):
    first, second = new_order(), new_order()
    await store.create(first, pending(first), message=execute_order_message(first.order_id), max_queue_depth=1)
    result = await store.create(
        second, pending(second), message=execute_order_message(second.order_id), max_queue_depth=1
    )
    assert result.outcome is CreateOutcome.OVERLOADED
    assert await store.load(second.order_id) is None
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 1


async def test_append_is_a_compare_and_set_on_seq(store):
    order = new_order()
    await store.create(order, pending(order))
    state = await store.load(order.order_id)
    routed = await store.append(
        state,
        OrderEvent(order.order_id, 2, OrderStatus.ROUTING, "market", attempt=1, dex="raydium"),
        remember={"quotedOut": Decimal("300")},
    )
    assert (routed.seq, routed.fields["quotedOut"], routed.fields["dex"]) == (2, "300", "raydium")
    with pytest.raises(StaleWrite):  # a second writer still holding the old state changes nothing
        await store.append(state, OrderEvent(order.order_id, 2, OrderStatus.ROUTING, "market", attempt=1))
    with pytest.raises(IllegalTransition):
        await store.append(routed, OrderEvent(order.order_id, 3, OrderStatus.CONFIRMED, "market"))
    assert [orjson.loads(e)["seq"] for e in await store.events(order.order_id)] == [1, 2]


async def test_terminal_orders_expire_after_retention(store, redis):
    order = new_order()
    await store.create(order, pending(order))
    state = await store.load(order.order_id)
    await store.append(state, OrderEvent(order.order_id, 2, OrderStatus.FAILED, "market", error="x"))
    assert 0 < await redis.ttl(redis_keys.order(order.order_id)) <= 60
    assert 0 < await redis.ttl(redis_keys.order_events(order.order_id)) <= 60


async def test_a_terminal_step_among_many_expires_its_order_and_the_rest_keep_theirs(store, redis):
    ended, going = new_order(), new_order()
    for order in (ended, going):
        await store.create(order, pending(order))
    changes = [
        (
            await store.load(ended.order_id),
            OrderEvent(ended.order_id, 2, OrderStatus.FAILED, "market"),
            None,
            None,
            None,
        ),
        (
            await store.load(going.order_id),
            OrderEvent(going.order_id, 2, OrderStatus.ROUTING, "market"),
            None,
            None,
            None,
        ),
    ]
    assert await store.append_many(changes) == [None, None]
    assert 0 < await redis.ttl(redis_keys.order(ended.order_id)) <= 60
    assert await redis.ttl(redis_keys.order(going.order_id)) == -1
    assert [state.status for state in await store.load_heads([ended.order_id, going.order_id])] == [
        OrderStatus.FAILED,
        OrderStatus.ROUTING,
    ]


async def test_heads_hold_the_spec_and_standing_of_each_order_and_none_for_a_missing_one(store):
    order, missing = new_order(clientOrderId="c-1"), new_order()
    await store.create(order, pending(order))
    head, absent = await store.load_heads([order.order_id, missing.order_id])
    full = await store.load(order.order_id)
    assert absent is None and await store.load_heads([]) == []
    assert (head.order, head.status, head.seq, head.attempt) == (full.order, full.status, full.seq, full.attempt)
    assert set(head.fields) == {"spec", "status", "seq"}  # attempt is written once an attempt begins


async def test_consecutive_steps_land_together_or_not_at_all(store, redis):
    order = new_order()
    await store.create(order, pending(order))
    state = await store.load(order.order_id)
    routing = OrderEvent(order.order_id, 2, OrderStatus.ROUTING, "market", attempt=1, dex="meteora")
    building = OrderEvent(order.order_id, 3, OrderStatus.BUILDING, "market", attempt=1, dex="meteora")
    routed = store.advanced(state, routing, {"quotedOut": Decimal("300")})
    built = await store.append_steps(state, [(routing, {"quotedOut": Decimal("300")}), (building, {"minOut": "298"})])
    assert (routed.seq, built.seq, built.status) == (2, 3, OrderStatus.BUILDING)
    assert await store.load(order.order_id) == built
    assert [orjson.loads(e)["status"] for e in await store.events(order.order_id)] == ["pending", "routing", "building"]
    entries = await redis.xrange(redis_keys.events_stream(0))
    assert [orjson.loads(fields[b"e"])["seq"] for _, fields in entries] == [1, 2, 3]
    with pytest.raises(StaleWrite):  # a stale writer's steps add nothing, not even the first
        await store.append_steps(state, [(routing, None), (building, None)])
    assert len(await store.events(order.order_id)) == 3


async def test_a_terminal_append_releases_the_writers_lease_and_no_one_elses(store):
    leases = OrderLeases(store.redis, ttl_ms=5000)
    order, other = new_order(), new_order()
    for each in (order, other):
        await store.create(each, pending(each))
    mine, _ = await leases.take_and_read(order.order_id)
    state = await store.load(order.order_id)
    await store.append(state, OrderEvent(order.order_id, 2, OrderStatus.FAILED, "market", error="x"), release=mine)
    assert await leases.take(order.order_id) is not None  # free again
    theirs, _ = await leases.take_and_read(other.order_id)
    stolen = type(theirs)(other.order_id, "not-the-holders-token")
    state = await store.load(other.order_id)
    await store.append(state, OrderEvent(other.order_id, 2, OrderStatus.FAILED, "market", error="x"), release=stolen)
    assert await leases.take(other.order_id) is None  # still held by its holder


async def test_a_fenced_append_lands_only_while_its_lease_holds_the_order(store, redis):
    leases = OrderLeases(store.redis, ttl_ms=5000)
    order = new_order()
    await store.create(order, pending(order))
    state = await store.load(order.order_id)
    routing = OrderEvent(order.order_id, 2, OrderStatus.ROUTING, "market", attempt=1, dex="meteora")
    lease = await leases.take(order.order_id)
    await redis.set(lease.key, "another-worker")  # its lease expired and another execution took the order
    with pytest.raises(LeaseLost):  # at the seq it expects, but no longer the lease's holder: nothing lands
        await store.append(state, routing, fence=lease)
    assert len(await store.events(order.order_id)) == 1
    await redis.set(lease.key, lease.token)
    assert (await store.append(state, routing, fence=lease)).seq == 2
