"""Bounded resources on real Redis and PostgreSQL: the per-client cap on resting orders (and its count, which
follows every end of a rest exactly), the TTL of every key that outlives its order, the 503 before Redis
reaches its maxmemory, /ready's shared dependency checks, and PostgreSQL's statement timeout."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from uuid import UUID, uuid4

import httpx
import orjson
import psutil
import pytest
from sqlalchemy import event, make_url, text
from sqlalchemy.exc import DBAPIError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.api.app import create_app
from services.api.routes.ops import METRICS_RENDERS_PER_S
from shared import redis_keys
from shared.auth.api_keys import KeyRing, Role
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.domain.orders import OrderRequest, accept
from shared.domain.partitions import all_partitions, new_order_id, partition_of
from shared.execution.dead_letters import DeadLetters
from shared.persistence.batch import make_engine
from shared.persistence.history import make_async_engine
from shared.persistence.timeouts import CLIENT_DEADLINE_MARGIN_S
from shared.store.expiries import ExpirySweeper
from shared.store.limit_book import LimitBook
from shared.store.order_store import CreateOutcome, OrderStore, RestingPlace, StaleWrite
from shared.store.placement import placement
from shared.venues.base import Dex, SwapLeg, TxOutcome, TxStatus
from shared.venues.ledger import RedisLedger, TxRecord
from tests.support.api_process import api_only, scrape, server_errors
from tests.support.dead_letters import dead_letter, fail
from tests.support.orders import make_store, wait_for
from tests.support.processes import fast_engine

MARKET = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "slippageBps": 500}
#: Far above any SOL price: rests until cancelled (and no quote stream runs here anyway).
LIMIT = {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": "1000000"}
SNIPER = {"type": "sniper", "tokenIn": "SOL", "tokenOut": "WIF", "amount": "0.1", "trigger": {"kind": "listing"}}
#: Conditional orders, resting until cancelled (no quote stream, no tick, runs here).
CONDITIONAL = [
    {"type": "stop", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "stopPrice": "1"},
    {"type": "trailing_stop", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "trailBps": 50},
    {
        "type": "oco",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "1",
        "takeProfitPrice": "1000000",
        "stopPrice": "1",
    },
]


@contextlib.asynccontextmanager
async def api(settings):
    """The app in-process; `client(ip)` is an HTTP client the API sees as coming from `ip`."""
    app = create_app(settings)
    async with app.router.lifespan_context(app), contextlib.AsyncExitStack() as clients:

        async def client(ip: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(ip, 40000))
            return await clients.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://api", timeout=10)
            )

        yield app, client


@pytest.fixture
def worker(redis_url, database_url, tmp_path):
    engine = fast_engine(redis_url, database_url, tmp_path, "bounded-resources")
    engine.start("execution-worker")
    yield engine
    engine.stop_all()


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"] == code and body["message"] and body["details"] == []


async def resting_counts(redis, partitions: int = 1) -> dict[str, int]:
    """Each owner's resting orders, every partition's count added up."""
    counts: dict[str, int] = {}
    for partition in all_partitions(partitions):
        for key, value in (await redis.hgetall(redis_keys.resting_per_owner(partition))).items():
            counts[key.decode()] = counts.get(key.decode(), 0) + int(value)
    return counts


async def resting_counts_in(redis, partition: int) -> dict[str, int]:
    raw = await redis.hgetall(redis_keys.resting_per_owner(partition))
    return {key.decode(): int(value) for key, value in raw.items()}


# --- 1. the resting cap ----------------------------------------------------------------------------------


async def test_a_flood_of_resting_orders_is_refused_at_the_cap_and_nobody_else_notices(redis, settings, worker):
    async with api(settings.model_copy(update={"max_resting_per_owner": 5})) as (_, client):
        flooder, other = await client("10.0.0.1"), await client("10.0.0.2")
        accepted = []
        for body in [LIMIT, LIMIT, SNIPER, LIMIT, SNIPER]:
            response = await flooder.post("/api/orders/execute", json=body)
            assert response.status_code == 200, response.text
            accepted.append(response.json()["orderId"])
        for body in [LIMIT, SNIPER] * 10:  # the flood goes on: every one refused, none stored
            assert_error(await flooder.post("/api/orders/execute", json=body), 409, "too_many_resting_orders")
        assert await resting_counts(redis) == {"ip:10.0.0.1": 5}

        assert (await other.post("/api/orders/execute", json=LIMIT)).status_code == 200  # another client
        assert (await flooder.get("/ready")).status_code == 200  # the engine is healthy
        market = await flooder.post("/api/orders/execute", json=MARKET)  # market orders do not rest: not capped
        assert market.status_code == 200
        final = await wait_for(make_store(redis), _order(market.json()["orderId"]), timeout=60)
        assert final.status is OrderStatus.CONFIRMED

        assert (await flooder.delete(f"/api/orders/{accepted[0]}")).status_code == 200  # frees exactly one slot
        assert await resting_counts(redis) == {"ip:10.0.0.1": 4, "ip:10.0.0.2": 1}
        assert (await flooder.post("/api/orders/execute", json=SNIPER)).status_code == 200
        assert_error(await flooder.post("/api/orders/execute", json=LIMIT), 409, "too_many_resting_orders")
        assert await resting_counts(redis) == {"ip:10.0.0.1": 5, "ip:10.0.0.2": 1}
        metrics = (await flooder.get("/metrics")).text
        assert 'engine_orders_rejected_total{reason="too_many_resting_orders"} 21.0' in metrics


async def test_with_api_keys_the_cap_is_per_key_whatever_the_address(redis, settings):
    ring = KeyRing(redis)
    alice, _ = await ring.create("alice", Role.USER)
    bob, _ = await ring.create("bob", Role.USER)
    capped = settings.model_copy(update={"max_resting_per_owner": 2, "auth_enabled": True})
    async with api(capped) as (_, client):
        http = await client("10.0.0.7")  # one address (a NAT, say), two keys

        async def submit(secret: str) -> httpx.Response:
            return await http.post("/api/orders/execute", json=LIMIT, headers={"Authorization": f"Bearer {secret}"})

        assert [(await submit(alice)).status_code for _ in range(2)] == [200, 200]
        assert_error(await submit(alice), 409, "too_many_resting_orders")
        assert (await submit(bob)).status_code == 200
    counts = await resting_counts(redis)
    assert sorted(counts.values()) == [1, 2] and all(owner.startswith("key:") for owner in counts)


def _order(order_id: str) -> SimpleNamespace:
    return SimpleNamespace(order_id=UUID(order_id))  # all `wait_for` needs


async def place(store, body: dict, owner: str = "ip:1.2.3.4", cap: int = 100, partition: int | None = None):
    """A resting order accepted as the API accepts one (in `partition`, if given), capped at `cap` per owner."""
    order = accept(OrderRequest.model_validate(body))
    if partition is not None:
        order = replace(order, order_id=new_order_id(partition))
    plan = placement(order)
    result = await store.create(order, plan.first_event, resting=plan.resting, rest_owner=owner, max_resting=cap)
    return order, result


async def ended(store, order, status: OrderStatus, **claim_from) -> None:
    state = await store.load(order.order_id)
    event_ = OrderEvent(order.order_id, state.seq + 1, status, order.type.value)
    await store.append(state, event_, claim=RestingPlace.from_fields(state.fields), **claim_from)


async def test_the_count_goes_down_exactly_once_whichever_way_a_rest_ends(redis):
    store, book = make_store(redis), LimitBook(redis, make_store(redis))
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    triggered, _ = await place(store, {**LIMIT, "limitPrice": "100"})
    expiring, _ = await place(store, {**LIMIT, "expiresAt": soon})
    cancelled, _ = await place(store, SNIPER)
    failing, _ = await place(store, LIMIT)
    await place(store, LIMIT, owner="ip:5.6.7.8")  # a witness: a second decrement anywhere would show here too
    assert await resting_counts(redis) == {"ip:1.2.3.4": 4, "ip:5.6.7.8": 1}

    members = await book.take_crossed("SOL-USDC", Decimal("150"))  # out of its bucket, still `waiting`
    assert await resting_counts(redis) == {"ip:1.2.3.4": 4, "ip:5.6.7.8": 1}
    assert await book.hand_over_at(members, Decimal("150")) == 1  # `triggered`: no longer resting
    assert await resting_counts(redis) == {"ip:1.2.3.4": 3, "ip:5.6.7.8": 1}
    assert await book.hand_over_at(members, Decimal("150")) == 0  # a second hand-over changes nothing
    assert await resting_counts(redis) == {"ip:1.2.3.4": 3, "ip:5.6.7.8": 1}

    await ended(store, cancelled, OrderStatus.CANCELLED)
    with pytest.raises(StaleWrite):  # a duplicate cancel is a stale write: no second decrement
        stale = OrderEvent(cancelled.order_id, 3, OrderStatus.CANCELLED, "sniper")
        state = await store.load(cancelled.order_id)
        await store.append(state.__class__(state.order, OrderStatus.WAITING, 2, 0, state.fields), stale)
    assert await resting_counts(redis) == {"ip:1.2.3.4": 2, "ip:5.6.7.8": 1}

    await ended(store, failing, OrderStatus.FAILED)
    assert await resting_counts(redis) == {"ip:1.2.3.4": 1, "ip:5.6.7.8": 1}

    sweeper = ExpirySweeper(redis, store, redis_keys.limit_expiries(0))
    assert await sweeper.sweep(now_ms=int((datetime.now(UTC) + timedelta(seconds=5)).timestamp() * 1000)) == 1
    assert (await store.load(expiring.order_id)).status is OrderStatus.EXPIRED
    assert await resting_counts(redis) == {"ip:5.6.7.8": 1}  # at zero the field is gone: the hash never grows


async def test_a_cancel_racing_a_trigger_frees_one_slot_whoever_wins(redis):
    store = make_store(redis)
    book = LimitBook(redis, store)
    await place(store, LIMIT)  # stays: a second decrement would take it to 0
    winners = set()
    for _ in range(20):
        order, _ = await place(store, {**LIMIT, "limitPrice": "100"})
        state = await store.load(order.order_id)
        cancel = OrderEvent(order.order_id, state.seq + 1, OrderStatus.CANCELLED, "limit")

        async def trigger() -> int:
            return await book.hand_over_at(await book.take_crossed("SOL-USDC", Decimal("150")), Decimal("150"))

        await asyncio.gather(
            trigger(),
            store.append(state, cancel, claim=RestingPlace.from_fields(state.fields)),
            return_exceptions=True,  # the loser's ClaimLost / StaleWrite
        )
        winners.add((await store.load(order.order_id)).status)
        assert await resting_counts(redis) == {"ip:1.2.3.4": 1}
    assert winners <= {OrderStatus.TRIGGERED, OrderStatus.CANCELLED}


async def test_the_cap_is_per_owner_and_orders_without_an_owner_are_not_counted(redis):
    store = make_store(redis)
    assert (await place(store, LIMIT, owner="key:a", cap=1))[1].outcome is CreateOutcome.CREATED
    assert (await place(store, LIMIT, owner="key:a", cap=1))[1].outcome is CreateOutcome.TOO_MANY_RESTING
    assert (await place(store, LIMIT, owner="key:b", cap=1))[1].outcome is CreateOutcome.CREATED
    assert (await place(store, LIMIT, owner="", cap=1))[1].outcome is CreateOutcome.CREATED  # e.g. a replay
    assert await resting_counts(redis) == {"key:a": 1, "key:b": 1}


async def test_a_retry_is_recognised_even_when_the_owners_other_partitions_hold_the_whole_cap(redis):
    # Racing submissions may leave an owner over the cap across partitions; a retry of an order it already has
    # must still get that order back, not a refusal: the script checks the key before the cap.
    store = OrderStore(redis, retention_s=3600, idempotency_ttl_s=3600, partitions=4)
    owner, body = "key:retrying", {**LIMIT, "limitPrice": "100"}
    first = accept(OrderRequest.model_validate(body), idempotency_key="once", partitions=4)
    plan = placement(first)
    created = await store.create(
        first, plan.first_event, resting=plan.resting, body_hash="h", rest_owner=owner, max_resting=1
    )
    assert created.outcome is CreateOutcome.CREATED
    other = next(p for p in all_partitions(4) if p != partition_of(first.order_id))
    await redis.hset(redis_keys.resting_per_owner(other), owner, 1)  # a racer's overshoot

    retry = accept(OrderRequest.model_validate(body), idempotency_key="once", partitions=4)
    plan = placement(retry)
    again = await store.create(
        retry, plan.first_event, resting=plan.resting, body_hash="h", rest_owner=owner, max_resting=1
    )
    assert (again.outcome, again.order_id) == (CreateOutcome.REPLAYED, first.order_id)
    fresh, refused = await place(store, body, owner=owner, cap=1, partition=partition_of(first.order_id))
    assert refused.outcome is CreateOutcome.TOO_MANY_RESTING and await store.load(fresh.order_id) is None


async def test_the_cap_holds_across_partitions_and_a_slot_freed_in_one_is_free_in_any(redis):
    store = OrderStore(redis, retention_s=3600, idempotency_ttl_s=3600, partitions=4)
    owner, cap = "key:spread", 3

    async def submit(body: dict, partition: int, who: str = owner):
        order, result = await place(store, body, owner=who, cap=cap, partition=partition)
        assert partition_of(order.order_id) == partition
        return order, result.outcome

    triggering, outcome_0 = await submit({**LIMIT, "limitPrice": "100"}, 0)
    cancelling, outcome_1 = await submit(SNIPER, 1)
    _, outcome_2 = await submit(CONDITIONAL[0], 2)
    assert [outcome_0, outcome_1, outcome_2] == [CreateOutcome.CREATED] * 3
    # Each partition counts its own: one each, none in the fourth, three in all.
    assert [await resting_counts_in(redis, p) for p in all_partitions(4)] == [{owner: 1}, {owner: 1}, {owner: 1}, {}]

    # The 4th is refused wherever it would rest: in a partition that holds none of the owner's orders (the
    # others already fill the cap) as in one that holds one (what is left of the cap there is already used).
    for partition in all_partitions(4):
        refused, outcome = await submit(LIMIT, partition)
        assert outcome is CreateOutcome.TOO_MANY_RESTING, partition
        assert await store.load(refused.order_id) is None
    assert await resting_counts(redis, 4) == {owner: 3}
    assert (await submit(LIMIT, 3, who="key:other"))[1] is CreateOutcome.CREATED  # another owner is not capped

    await ended(store, cancelling, OrderStatus.CANCELLED)  # a cancel in partition 1 frees one slot...
    assert await resting_counts_in(redis, 1) == {}
    assert (await submit(LIMIT, 3))[1] is CreateOutcome.CREATED  # ...taken in partition 3
    assert (await submit(SNIPER, 1))[1] is CreateOutcome.TOO_MANY_RESTING  # and only one
    assert await resting_counts(redis, 4) == {owner: 3, "key:other": 1}

    book = LimitBook(redis, store, 0)  # a trigger in partition 0 frees another...
    assert await book.hand_over_at(await book.take_crossed("SOL-USDC", Decimal("150")), Decimal("150")) == 1
    assert (await store.load(triggering.order_id)).status is OrderStatus.TRIGGERED
    assert await resting_counts_in(redis, 0) == {}
    assert (await submit(SNIPER, 1))[1] is CreateOutcome.CREATED  # ...taken in partition 1
    for partition in all_partitions(4):
        assert (await submit(LIMIT, partition))[1] is CreateOutcome.TOO_MANY_RESTING, partition
    assert [await resting_counts_in(redis, p) for p in all_partitions(4)] == [
        {},
        {owner: 1},
        {owner: 1},
        {owner: 1, "key:other": 1},
    ]


# --- 2. TTLs ---------------------------------------------------------------------------------------------

#: Keys without a TTL that are fine: one per deployment, or bounded by something that is (see
#: docs/redis-keys.md, "Lifetimes").
UNBOUNDED_OK = (
    b"dramatiq:",
    b"stream:",
    b"quotes:",
    b"limit:",
    b"sniper:",
    redis_keys.cond_doorbell(0).encode(),  # one element at most; the rest of `cond:` is gone once none rests
    redis_keys.SIM_SEED.encode(),
    redis_keys.SIM_EPOCH.encode(),
    redis_keys.SIM_EVENTS_PUBLISHED_UNTIL.encode(),
    b"auth:api-keys",
    redis_keys.resting_per_owner(0).encode(),
)


async def test_every_key_an_ended_order_leaves_behind_expires(redis, settings, worker):
    async with api(settings) as (_, client):
        http = await client("10.0.0.3")
        ids = []
        for body in (MARKET, MARKET, LIMIT, SNIPER, *CONDITIONAL):
            response = await http.post("/api/orders/execute", json=body, headers={"Idempotency-Key": str(len(ids))})
            ids.append(response.json()["orderId"])
        for order_id in ids[2:]:
            assert (await http.delete(f"/api/orders/{order_id}")).status_code == 200
        store = make_store(redis)
        for order_id in ids[:2]:
            assert (await wait_for(store, _order(order_id), timeout=60)).status is OrderStatus.CONFIRMED
    await asyncio.sleep(0.5)  # the worker's acknowledgement and lease release land just after `confirmed`
    forever = []
    async for key in redis.scan_iter(count=1000):
        if await redis.ttl(key) == -1 and not key.startswith(UNBOUNDED_OK):
            forever.append(key)
    assert forever == [], f"keys that would stay forever: {forever}"
    ledger_keys = [key async for key in redis.scan_iter(match="sim:*")]
    assert any(
        key.startswith(redis_keys.venue_nonce("").encode()) for key in ledger_keys
    )  # the chain's keys were there, with TTLs
    assert any(key.startswith(redis_keys.venue_order_transactions("").encode()) for key in ledger_keys)


async def test_the_simulated_chain_forgets_after_its_retention(redis):
    ledger = RedisLedger(redis, retention_s=1234)
    record = TxRecord(
        tx_hash="tx-1", order_id="order-1", attempt=1, legs=(SwapLeg(Dex.RAYDIUM, Decimal(1)),), token_in="SOL",
        token_out="USDC", min_amount_out=Decimal(1), submitted_at=0.0, lands_at=0.0,
    )  # fmt: skip
    await ledger.record_submission(record)
    outcome = TxOutcome(tx_hash="tx-1", status=TxStatus.CONFIRMED, amount_out=Decimal(150), executed_price=Decimal(150))
    await ledger.settle("tx-1", outcome, "order-1")
    for key in (
        redis_keys.venue_transaction("tx-1"),
        redis_keys.venue_order_transactions("order-1"),
        redis_keys.venue_nonce("order-1"),
    ):
        assert 1200 < await redis.ttl(key) <= 1234, key


# --- 3. Redis memory -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def maxmemory_just_above_usage(redis, fraction_used: float):
    """Redis's maxmemory set so that what it uses now is `fraction_used` of it; restored afterwards."""
    before = await redis.config_get("maxmemory")
    policy = await redis.config_get("maxmemory-policy")
    used = (await redis.info("memory"))["used_memory"]
    await redis.config_set("maxmemory-policy", "noeviction")
    await redis.config_set("maxmemory", int(used / fraction_used))
    try:
        yield int(used / fraction_used)
    finally:
        await redis.config_set("maxmemory", before["maxmemory"])
        await redis.config_set("maxmemory-policy", policy["maxmemory-policy"])


async def test_submissions_get_503_before_redis_is_full_while_accepted_work_goes_on(redis, settings, worker):
    store = make_store(redis)
    # A low threshold leaves Redis room for what goes on meanwhile (the worker's own writes and connections).
    async with api(settings.model_copy(update={"redis_memory_high_fraction": 0.5})) as (app, client):
        http = await client("10.0.0.4")
        resting = (await http.post("/api/orders/execute", json=LIMIT)).json()["orderId"]
        warm_up = (await http.post("/api/orders/execute", json=MARKET)).json()["orderId"]
        assert (await wait_for(store, _order(warm_up), timeout=60)).status is OrderStatus.CONFIRMED  # worker up
        memory = (await http.get("/ready")).json()["redisMemory"]
        assert memory == "unlimited" or float(memory) < 0.5  # "unlimited": a Redis without maxmemory
        async with maxmemory_just_above_usage(redis, 0.6) as limit:
            await asyncio.sleep(1.1)  # the API reads INFO memory at most once a second
            refused = await http.post("/api/orders/execute", json=MARKET)
            assert_error(refused, 503, "redis_memory_high")
            assert int(refused.headers["Retry-After"]) >= 1
            assert_error(await http.post("/api/orders/execute", json=LIMIT), 503, "redis_memory_high")

            # What was accepted goes on: an order already queued executes, a resting order can be cancelled.
            order = accept(OrderRequest.model_validate(MARKET))
            plan = placement(order)
            assert (await store.create(order, plan.first_event, message=plan.message)).outcome is CreateOutcome.CREATED
            assert (await wait_for(store, order, timeout=60)).status is OrderStatus.CONFIRMED
            assert (await http.delete(f"/api/orders/{resting}")).status_code == 200

            ready = await http.get("/ready")
            assert ready.status_code == 200 and ready.json()["redisMemoryHigh"] is True
            assert float(ready.json()["redisMemory"]) >= 0.5
            samples = await scrape(http)
            assert samples[("engine_redis_memory_bytes", (("kind", "maxmemory"),))] == limit
            assert samples[("engine_redis_memory_bytes", (("kind", "used"),))] >= limit * 0.5
            assert samples[("engine_orders_rejected_total", (("reason", "redis_memory_high"),))] == 2
        await asyncio.sleep(1.1)
        assert (await http.post("/api/orders/execute", json=MARKET)).status_code == 200  # room again


async def test_the_api_reads_redis_memory_at_most_once_a_second(redis, settings):
    async with api(settings) as (app, client):
        http = await client("10.0.0.5")
        watch = app.state.context.memory
        calls = []
        real_info = watch.redis.info

        async def counting_info(*args, **kwargs):
            calls.append(1)
            return await real_info(*args, **kwargs)

        watch.redis.info = counting_info
        try:
            answers = await asyncio.gather(*(http.post("/api/orders/execute", json=MARKET) for _ in range(50)))
        finally:
            watch.redis.info = real_info
        assert {a.status_code for a in answers} == {200}
        assert len(calls) <= 2  # one, or two if the burst straddled the refresh


# --- 4. slow /ws?userId= readers -----------------------------------------------------------------------------

#: Big events fill the kernel's and the server's buffers quickly, so the cap is what decides.
PADDING = "x" * 16_000


async def test_a_user_socket_that_does_not_read_is_closed_4008_and_the_others_are_unaffected(
    redis, redis_url, database_url, tmp_path
):
    with api_only(redis_url, database_url, tmp_path / "api", WS_USER_OUTBOX_MAX="40") as engine:
        url = f"{engine.ws_url}/ws?userId=crowd"
        port = int(engine.env["API_PORT"])
        tight = socket.socket()
        tight.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the client's kernel buffers little
        tight.connect(("127.0.0.1", port))
        tight.setblocking(False)
        async with (
            connect(url, sock=tight, max_queue=1, max_size=None) as slow,  # reads nothing until told
            connect(url, max_size=None) as reader,
            httpx.AsyncClient(base_url=engine.api_url) as http,
        ):
            await asyncio.sleep(0.5)  # both subscribed
            events = 300

            async def read_all() -> list[int]:
                return [orjson.loads(await reader.recv())["seq"] for _ in range(events)]

            reading = asyncio.create_task(read_all())
            for first in range(1, events + 1, 10):  # bursts of 10: well within the cap for a reader that reads
                async with redis.pipeline(transaction=False) as pipe:
                    for seq in range(first, first + 10):
                        payload = orjson.dumps({"type": "status", "seq": seq, "pad": PADDING})
                        pipe.xadd(redis_keys.events_stream(0), {"o": str(uuid4()), "u": "crowd", "e": payload})
                    await pipe.execute()
                await asyncio.sleep(0.05)
            async with asyncio.timeout(30):
                received = await reading
            assert received == list(range(1, events + 1))  # the reader that keeps up gets every event
            refused = ("engine_requests_refused_total", (("reason", "ws_too_slow"),))
            async with asyncio.timeout(10):
                while (await scrape(http)).get(refused) != 1:
                    await asyncio.sleep(0.1)

            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(30):
                    async for _ in slow:  # what was already on its way, then the close
                        pass
            assert slow.close_code == 4008 and slow.close_reason == "too slow"
            await reader.ping()  # the other socket on the same API is still open
            assert reader.close_code is None
            assert (await http.get("/ready")).status_code == 200


# --- 5. /ready and /metrics --------------------------------------------------------------------------------


async def test_many_concurrent_ready_calls_make_at_most_a_couple_of_postgres_checks(redis, settings):
    async with api(settings) as (app, client):
        http = await client("10.0.0.6")
        checks = []

        def count(conn, cursor, statement, *args):
            if statement.strip() == "SELECT 1":
                checks.append(statement)

        event.listen(app.state.context.db.sync_engine, "before_cursor_execute", count)
        answers = await asyncio.gather(*(http.get("/ready") for _ in range(200)))
        assert {a.status_code for a in answers} == {200}
        assert all(a.json()["postgres"] == "ok" and a.json()["redis"] == "ok" for a in answers)
        assert len(checks) <= 2, len(checks)
        scrapes = await asyncio.gather(*(http.get("/metrics") for _ in range(50)))
        assert {s.status_code for s in scrapes} == {200}
        assert app.state.context.metrics_page.computations < 50  # concurrent scrapes shared their renders
        assert len(checks) <= 2  # /metrics never touches PostgreSQL


async def test_a_flood_of_scrapes_one_after_another_renders_at_most_the_budget(redis, settings):
    async with api(settings) as (app, client):
        http = await client("10.0.0.7")
        page = app.state.context.metrics_page
        started = time.monotonic()
        for _ in range(300):
            assert (await http.get("/metrics")).status_code == 200
        elapsed = time.monotonic() - started
        budget = METRICS_RENDERS_PER_S * (1 + elapsed) + 1  # the burst, the refill, and rounding
        assert page.computations <= budget, (page.computations, elapsed)


# --- 6. statement timeouts -------------------------------------------------------------------------------


async def test_a_statement_longer_than_the_timeout_fails(settings, database_url):
    async with (
        api(settings.model_copy(update={"database_statement_timeout_ms": 200})) as (app, _),
        app.state.context.db.connect() as connection,
    ):
        assert (await connection.execute(text("SHOW statement_timeout"))).scalar() == "200ms"
        with pytest.raises(DBAPIError, match="statement timeout"):
            await connection.execute(text("SELECT pg_sleep(2)"))
    history = make_async_engine(database_url, statement_timeout_ms=200)
    try:
        async with history.connect() as connection:
            with pytest.raises(DBAPIError, match="statement timeout"):
                await connection.execute(text("SELECT pg_sleep(2)"))
    finally:
        await history.dispose()
    batches = make_engine(database_url, statement_timeout_ms=300)
    try:
        with batches.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "300ms"
            with pytest.raises(DBAPIError, match="statement timeout"):
                connection.execute(text("SELECT pg_sleep(2)"))
    finally:
        batches.dispose()


# --- 7. connections that never send a request ------------------------------------------------------------


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes `sock` (EOF or reset) within `within_s`, whatever it wrote first."""
    sock.settimeout(within_s)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True  # reset: closed too
    return True


async def test_idle_slowloris_and_bodiless_connections_cannot_take_the_apis_file_descriptors(
    redis_url, database_url, tmp_path
):
    cap = 40
    settings = {"HTTP_MAX_CONNECTIONS_PER_CLIENT": str(cap), "HTTP_REQUEST_TIMEOUT_S": "1.5"}
    # Before: uvicorn kept 2,000 idle connections from one client (2,079 descriptors) for as long as they
    # stayed, up to the process's 20,000, and a request whose body never came held its task for ever.
    with api_only(redis_url, database_url, tmp_path / "api", **settings) as engine:
        port = int(engine.env["API_PORT"])
        neighbour = httpx.AsyncHTTPTransport(local_address="127.0.0.2")  # another address on this machine
        async with (
            httpx.AsyncClient(base_url=engine.api_url, transport=neighbour, timeout=5) as other,
            connect(f"{engine.ws_url}/ws?userId=idle-socket") as upgraded,  # a WebSocket: not one of the cap
        ):
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap)]
            started = time.monotonic()
            await asyncio.sleep(0.3)
            extra = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]  # past the cap
            for sock in extra:  # closed at once, before the header timeout
                assert await asyncio.to_thread(_closed_by_server, sock, 1.0)
            assert time.monotonic() - started < 1.5
            assert (await other.get("/health")).status_code == 200  # another client is served meanwhile

            slowloris = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
            for part in (b"GET /health HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n"):
                slowloris.sendall(part)  # busy, never done: bytes keep coming, the headers never end
                await asyncio.sleep(0.5)
            assert await asyncio.to_thread(_closed_by_server, slowloris, 3.0)

            no_body = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
            no_body.sendall(  # an order announced and never sent: the route waits for the body, not for ever
                b"POST /api/orders/execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            assert await asyncio.to_thread(_closed_by_server, no_body, 3.0)

            # The idle ones are answered 408 and closed once the header timeout has passed; the address may
            # connect again, and the WebSocket (whose headers came in time) is still open.
            first = idle[0]
            first.settimeout(5)
            assert first.recv(4096).startswith(b"HTTP/1.1 408 ")
            assert all(await asyncio.gather(*(asyncio.to_thread(_closed_by_server, s, 5.0) for s in idle)))
            async with httpx.AsyncClient(base_url=engine.api_url, timeout=5) as again:
                assert (await again.get("/health")).status_code == 200
            await upgraded.ping()
            assert upgraded.close_code is None
            for sock in [*idle, *extra, slowloris, no_body]:
                sock.close()
        assert server_errors(engine) == []


# --- 8. a replayed resting order takes its owner's slot -------------------------------------------------


async def test_a_replayed_limit_order_counts_against_its_owners_resting_cap(redis):
    store = make_store(redis)
    book = LimitBook(redis, store)
    order, _ = await place(store, {**LIMIT, "limitPrice": "100"}, owner="ip:7.7.7.7", cap=1)
    assert await book.hand_over_at(await book.take_crossed("SOL-USDC", Decimal("150")), Decimal("150")) == 1
    await fail(store, order.order_id)  # executed and failed for good: dead-lettered
    await dead_letter(redis, order.order_id)
    assert await resting_counts(redis) == {}  # the slot came back when it triggered

    result = await DeadLetters(redis, store, RedisLedger(redis)).replay(order.order_id)
    replayed = await store.load(UUID(result.new_order_id))
    assert replayed.status is OrderStatus.WAITING  # rests again, as the client's order
    # Before: the replay rested uncounted, so the owner could fill its cap beside it (cap + 1, + 2, ...).
    assert await resting_counts(redis) == {"ip:7.7.7.7": 1}
    assert (await place(store, LIMIT, owner="ip:7.7.7.7", cap=1))[1].outcome is CreateOutcome.TOO_MANY_RESTING
    await ended(store, replayed.order, OrderStatus.CANCELLED)  # and its end gives the slot back
    assert await resting_counts(redis) == {}


# --- 9. a PostgreSQL that does not answer at all ---------------------------------------------------------


class FreezablePostgres:
    """A unix-socket relay in front of the test's PostgreSQL that can stop passing bytes either way: a
    server that is SIGSTOPped, or a host that froze, as its clients see it (connected, and silent)."""

    def __init__(self, database_url: str) -> None:
        self.target = make_url(database_url)
        self.port = self.target.port or 5432
        self.dir = tempfile.mkdtemp(prefix="pgrelay", dir="/tmp")  # a unix socket's path is short
        self.frozen = asyncio.Event()
        self.url = self.target.set(host=None, query={**self.target.query, "host": self.dir}).render_as_string(False)

    async def _open_target(self):
        host = self.target.query.get("host") or self.target.host
        if isinstance(host, str) and host.startswith("/"):
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{self.port}")
        return await asyncio.open_connection(host, self.port)

    async def _pipe(self, reader, writer) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.frozen.is_set():
                    await asyncio.Event().wait()  # silent for ever, the connection open
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader, writer) -> None:
        target_reader, target_writer = await self._open_target()
        await asyncio.gather(self._pipe(reader, target_writer), self._pipe(target_reader, writer))

    @contextlib.asynccontextmanager
    async def running(self):
        server = await asyncio.start_unix_server(self._serve, f"{self.dir}/.s.PGSQL.{self.port}")
        try:
            yield self
        finally:
            server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await server.wait_closed()


async def test_a_history_read_gives_up_on_a_postgres_that_never_answers(settings, database_url):
    # Before: GET /api/orders waited on a SIGSTOPped PostgreSQL for more than 30 s (for ever, really: the
    # statement_timeout is the server's to enforce), holding its pooled connection and its request.
    async with FreezablePostgres(database_url).running() as relay:
        frozen_settings = settings.model_copy(update={"database_url": relay.url, "database_statement_timeout_ms": 500})
        async with api(frozen_settings) as (_, client):
            http = await client("10.0.0.9")
            assert (await http.get("/api/orders")).status_code == 200  # a pooled connection, through the relay
            relay.frozen.set()
            started = time.monotonic()
            async with asyncio.timeout(30):
                answer = await http.get("/api/orders")
            # 0.5 s + the 2 s margin, then psycopg's own attempt to cancel (10 s at most) before it gives up
            assert_error(answer, 503, "unavailable")
            assert time.monotonic() - started < 0.5 + CLIENT_DEADLINE_MARGIN_S + 10 + 2


async def test_endless_request_headers_get_431_and_never_fill_the_apis_memory(redis_url, database_url, tmp_path):
    # Before: 12,000 headers of 60 KB on one connection (720 MB in 2 s) took the API from 153 to 796 MB of RSS.
    with api_only(redis_url, database_url, tmp_path / "api", HTTP_MAX_HEADER_BYTES="16384") as engine:
        api_pid = engine.processes["api"][0].process.pid
        port = int(engine.env["API_PORT"])
        rss_before = psutil.Process(api_pid).memory_info().rss

        def flood() -> tuple[int, bytes]:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.settimeout(10)
            sent, line = 0, b"X-Pad: " + b"a" * 60_000 + b"\r\n"
            with contextlib.suppress(OSError):  # reset or closed under our writes: that is the point
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                for _ in range(3_000):  # 180 MB, if nobody stops it
                    sock.sendall(line)
                    sent += len(line)
            answer = b""
            with contextlib.suppress(OSError):
                answer = sock.recv(4096)
            sock.close()
            return sent, answer

        sent, answer = await asyncio.to_thread(flood)
        assert sent < 20_000_000, "the API kept reading"
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
        assert psutil.Process(api_pid).memory_info().rss - rss_before < 50 * 1024 * 1024

        async with httpx.AsyncClient(base_url=engine.api_url, timeout=5) as http:
            big = await http.get("/health", headers={"X-Pad": "a" * 20_000})  # one large header: refused too
            assert big.status_code == 431
            assert (await http.get("/health", headers={"X-Pad": "a" * 8_000})).status_code == 200  # within it
        assert server_errors(engine) == []
