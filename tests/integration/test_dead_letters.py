"""Dead letters on a real Redis: what an operator sees, and replays that keep every promise of the engine."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.lifecycle import OrderStatus
from shared.domain.partitions import partition_of
from shared.execution.dead_letters import DeadLetterNotFound, DeadLetters
from shared.execution.replay_policy import NotReplayable, ReplayAction
from shared.venues.base import VenueUnavailable
from shared.venues.ledger import RedisLedger
from shared.venues.simulated import SimulatedVenue
from tests.support.dead_letters import (
    dead_letter,
    enqueue_execution,
    fail,
    failed_dead_letter,
    in_process_executor,
    queued_message_id,
    run_queued,
)
from tests.support.orders import (
    assert_gapless_and_legal,
    event_messages,
    make_store,
    place_limit_order,
    place_market_order,
    wait_for,
)
from tests.support.processes import fast_engine


def dead_letters(redis) -> DeadLetters:
    return DeadLetters(redis, make_store(redis), RedisLedger(redis))


async def order_ids_in_redis(redis) -> set[str]:
    keys = [key.decode() async for key in redis.scan_iter(f"{redis_keys.ORDER_KEY_PREFIX}*")]
    return {order_id for key in keys if (order_id := redis_keys.order_id_of(key)) is not None}


class SubmitFails(SimulatedVenue):
    async def submit(self, tx):
        raise VenueUnavailable(f"{self.dex} RPC error")


class ConfirmFails(SimulatedVenue):
    async def confirm(self, tx_hash):
        raise VenueUnavailable(f"{self.dex} RPC error")


async def test_list_and_show_describe_each_dead_letter_and_its_order(redis):
    store = make_store(redis)
    failed = await failed_dead_letter(redis, clientOrderId="c-1")
    pending = await place_market_order(store, tokenIn="USDC", tokenOut="SOL", amount="20")
    await dead_letter(redis, pending.order_id, retries=0, at_ms=int(time.time() * 1000) + 1000)

    rows = await dead_letters(redis).list()
    assert [row["orderId"] for row in rows] == [str(pending.order_id), str(failed.order_id)]  # newest first
    newest, oldest = rows
    assert oldest["status"] == "failed" and oldest["type"] == "market" and oldest["pair"] == "SOL-USDC"
    assert oldest["attempts"] == 3 and oldest["deadLetteredAt"].endswith("Z")
    assert oldest["lastError"] == "venue_unavailable: gave up after 3 attempts: every venue failed"
    assert newest["status"] == "pending" and newest["pair"] == "USDC-SOL" and newest["attempts"] == 1
    assert newest["lastError"] == "shared.venues.base.VenueUnavailable: raydium quote timeout"
    assert await dead_letters(redis).count() == 2

    shown = await dead_letters(redis).show(failed.order_id)
    assert shown["order"]["status"] == "failed" and shown["order"]["clientOrderId"] == "c-1"
    assert [e["status"] for e in shown["events"]] == ["pending", "failed"]
    (letter,) = shown["deadLetters"]
    assert letter["message"]["actor_name"] == "execute_order" and letter["message"]["options"]["retries"] == 2
    assert shown["lastReplay"] is None
    with pytest.raises(DeadLetterNotFound):
        await dead_letters(redis).show("00000000-0000-0000-0000-000000000000")


async def test_replaying_a_failed_order_creates_exactly_one_new_order_that_executes(redis):
    store = make_store(redis)
    original = await failed_dead_letter(redis)
    before = await event_messages(store, original)

    result = await dead_letters(redis).replay(original.order_id)
    assert result.action is ReplayAction.RECREATE and not result.already_replayed
    assert result.dead_letters_removed == 1
    assert await redis.zcard(redis_keys.dramatiq_dead_letters(0)) == 0
    assert await redis.hlen(redis_keys.dramatiq_dead_letter_messages(0)) == 0

    # The original keeps its one terminal state, untouched.
    assert await event_messages(store, original) == before
    new = await store.load(result.new_order_id)
    assert new.status is OrderStatus.PENDING and new.order.amount == original.amount
    assert new.order.idempotency_key == f"replay:{original.order_id}"
    first = orjson.loads((await store.events(new.order.order_id))[0])
    assert first["replayOf"] == str(original.order_id)

    executor = in_process_executor(redis, store)
    assert await run_queued(redis, executor) == [result.new_order_id]
    messages = await event_messages(store, new.order)
    assert [m["status"] for m in messages] == ["pending", "routing", "building", "submitted", "confirmed"]
    assert_gapless_and_legal(messages)
    assert len(await RedisLedger(redis).executions_for(result.new_order_id)) == 1

    again = await dead_letters(redis).replay(original.order_id)
    assert again.already_replayed and again.new_order_id == result.new_order_id
    assert await order_ids_in_redis(redis) == {str(original.order_id), result.new_order_id}
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 0
    assert (await dead_letters(redis).show(original.order_id))["lastReplay"]["newOrderId"] == result.new_order_id


async def test_a_replayed_limit_order_rests_again(redis):
    store = make_store(redis)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()  # within the resting orders' maximum lifetime
    original = await place_limit_order(store, "1000000", expiresAt=tomorrow)
    await fail(store, original.order_id)  # as if triggered, then its execution failed for good
    await enqueue_execution(redis, original.order_id)
    await dead_letter(redis, original.order_id)

    result = await dead_letters(redis).replay(original.order_id)
    new = await store.load(result.new_order_id)
    assert new.status is OrderStatus.WAITING and new.order.limit_price == original.limit_price
    bucket_prefix = redis_keys.limit_bucket_prefix("SOL-USDC", partition_of(new.order.order_id))
    assert new.fields["restKey"].startswith(bucket_prefix)
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 0  # it waits for its price, not for a worker


async def test_replaying_a_non_terminal_order_resumes_it_from_its_last_stage(redis):
    store = make_store(redis)
    order = await place_market_order(store)
    message_id = await queued_message_id(redis, order.order_id)
    with pytest.raises(VenueUnavailable):  # routed and built, then the submit failed: the order is `building`
        await in_process_executor(redis, store, SubmitFails).execute(order.order_id, attempt=1)
    assert (await store.load(order.order_id)).status is OrderStatus.BUILDING
    await dead_letter(redis, order.order_id)  # e.g. the failed event could not be written on the last attempt

    result = await dead_letters(redis).replay(order.order_id)
    assert result.action is ReplayAction.REQUEUE and result.new_order_id is None
    assert await redis.lrange(redis_keys.dramatiq_queue(0), 0, -1) == [message_id.encode()]
    requeued = orjson.loads(await redis.hget(redis_keys.dramatiq_messages(0), message_id))
    assert "retries" not in requeued["options"] and "traceback" not in requeued["options"]

    assert await run_queued(redis, in_process_executor(redis, store)) == [str(order.order_id)]
    messages = await event_messages(store, order)
    assert [m["status"] for m in messages] == ["pending", "routing", "building", "submitted", "confirmed"]
    assert_gapless_and_legal(messages)
    assert len(await RedisLedger(redis).executions_for(str(order.order_id))) == 1
    assert (await dead_letters(redis).replay(order.order_id)).already_replayed


@pytest.mark.parametrize("terminal", [False, True])
async def test_concurrent_replays_have_exactly_one_effect(redis, redis_url, terminal):
    store = make_store(redis)
    order = await place_market_order(store)
    if terminal:
        await fail(store, order.order_id)
    await dead_letter(redis, order.order_id)
    clients = [Redis.from_url(redis_url) for _ in range(6)]
    try:
        results = await asyncio.gather(*(dead_letters(client).replay(order.order_id) for client in clients))
    finally:
        for client in clients:
            await client.aclose()
    assert sum(not r.already_replayed for r in results) == 1
    assert len({(r.action, r.new_order_id, r.replayed_at) for r in results}) == 1
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 1  # one requeue, or one new order's message
    expected = {str(order.order_id)} | ({results[0].new_order_id} if terminal else set())
    assert await order_ids_in_redis(redis) == expected


async def test_replay_refuses_an_order_whose_transaction_may_have_executed(redis):
    store = make_store(redis)
    order = await place_market_order(store)
    with pytest.raises(VenueUnavailable):  # sent, but confirming it failed: its fate is unknown
        await in_process_executor(redis, store, ConfirmFails).execute(order.order_id, attempt=1)
    assert (await store.load(order.order_id)).status is OrderStatus.SUBMITTED
    await fail(store, order.order_id)
    await dead_letter(redis, order.order_id)
    with pytest.raises(NotReplayable) as refused:
        await dead_letters(redis).replay(order.order_id)
    assert refused.value.code == "may_have_executed"
    assert await dead_letters(redis).count() == 1  # left for an operator to look at, then purge
    assert await dead_letters(redis).purge_order(order.order_id) == 1
    assert await dead_letters(redis).count() == 0


async def test_a_dead_letter_of_a_confirmed_order_is_only_discarded(redis):
    store = make_store(redis)
    order = await place_market_order(store)
    await run_queued(redis, in_process_executor(redis, store))
    await enqueue_execution(redis, order.order_id)  # a stray duplicate that died after the order confirmed
    await dead_letter(redis, order.order_id)
    result = await dead_letters(redis).replay(order.order_id)
    assert result.action is ReplayAction.DISCARD
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 0
    assert [m["status"] for m in await event_messages(store, order)][-1] == "confirmed"


async def test_replay_all_takes_a_bounded_batch_oldest_first_and_purge_drops_old_ones(redis):
    now_ms = int(time.time() * 1000)
    orders = []
    for age_s in (300, 200, 100):
        order = await place_market_order(make_store(redis))
        await fail(make_store(redis), order.order_id)
        await dead_letter(redis, order.order_id, at_ms=now_ms - age_s * 1000)
        orders.append(order)
    items = await dead_letters(redis).replay_all(limit=2)
    assert [item.order_id for item in items] == [str(o.order_id) for o in orders[:2]]
    assert all(item.result.action is ReplayAction.RECREATE for item in items)
    assert await dead_letters(redis).count() == 1

    await place_market_order(make_store(redis))  # not dead-lettered: purge must not touch the live queue
    assert await dead_letters(redis).purge_older_than(150) == 0
    assert await dead_letters(redis).purge_older_than(50) == 1
    assert await dead_letters(redis).count() == 0
    assert await redis.llen(redis_keys.dramatiq_queue(0)) == 3  # two replays + the live order


@pytest.fixture
def engine(redis_url, database_url, tmp_path):
    engine = fast_engine(redis_url, database_url, tmp_path, "dead-letter-tests")
    yield engine
    engine.stop_all()


async def test_an_order_dead_lettered_by_a_real_worker_is_replayed_and_executed_by_one(redis, engine):
    store = make_store(redis)
    original = await place_market_order(store)
    failing = engine.start("execution-worker", SIM_FAILURE_RATE="1")
    await wait_for(store, original, timeout=30)
    for _ in range(100):  # the nack lands just after the failed event
        if await dead_letters(redis).count():
            break
        await asyncio.sleep(0.05)
    failing.stop()
    (row,) = await dead_letters(redis).list()
    assert row["orderId"] == str(original.order_id) and row["status"] == "failed" and row["attempts"] == 3

    result = await dead_letters(redis).replay(original.order_id)
    engine.start("execution-worker")
    new_order = (await store.load(result.new_order_id)).order
    assert (await wait_for(store, new_order, timeout=30)).status is OrderStatus.CONFIRMED
    messages = await event_messages(store, new_order)
    assert_gapless_and_legal(messages)
    assert messages[0]["replayOf"] == str(original.order_id)
    assert len(await RedisLedger(redis).executions_for(result.new_order_id)) == 1
    assert len(await RedisLedger(redis).executions_for(str(original.order_id))) == 0
    assert [m["status"] for m in await event_messages(store, original)] == ["pending", "failed"]
    assert await dead_letters(redis).count() == 0


async def test_a_replayed_order_keeps_its_owner_and_replays_once_under_the_engines_key_namespace(redis):
    store = make_store(redis)
    order = await place_market_order(store, owner="a1b2c3d4e5f6")
    await fail(store, order.order_id)
    await dead_letter(redis, order.order_id)
    first = await dead_letters(redis).replay(order.order_id)
    again = await dead_letters(redis).replay(order.order_id)
    assert again.already_replayed and again.new_order_id == first.new_order_id
    assert (await store.load(first.new_order_id)).order.owner == "a1b2c3d4e5f6"
    # The engine's namespace (shared/domain/idempotency.py), which no client key can reach.
    assert await redis.exists(redis_keys.idempotency(f"e:replay:{order.order_id}", partition_of(order.order_id)))
