"""Bounded resources on real Redis and PostgreSQL: the per-client cap on resting orders (and its count, which
follows every end of a rest exactly), the TTL of every key that outlives its order, the 503 before Redis
reaches its maxmemory, /ready's shared dependency checks, and PostgreSQL's statement timeout."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from uuid import UUID, uuid4

import httpx
import orjson
import pytest
from sqlalchemy import event, text
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
from shared.persistence.batch import make_engine
from shared.persistence.history import make_async_engine
from shared.store.expiries import ExpirySweeper
from shared.store.limit_book import LimitBook
from shared.store.order_store import CreateOutcome, RestingPlace, StaleWrite
from shared.store.placement import placement
from shared.venues.base import Dex, TxOutcome, TxStatus
from shared.venues.ledger import RedisLedger, TxRecord
from tests.support.api_process import api_only, scrape
from tests.support.orders import make_store, wait_for
from tests.support.processes import fast_engine

pytestmark = pytest.mark.integration

MARKET = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "slippageBps": 500}
#: Far above any SOL price: rests until cancelled (and no quote stream runs here anyway).
LIMIT = {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": "1000000"}
SNIPER = {"type": "sniper", "tokenIn": "SOL", "tokenOut": "WIF", "amount": "0.1", "trigger": {"kind": "listing"}}


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


async def resting_counts(redis) -> dict[str, int]:
    raw = await redis.hgetall(redis_keys.RESTING_PER_OWNER)
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


async def place(store, body: dict, owner: str = "ip:1.2.3.4", cap: int = 100):
    order = accept(OrderRequest.model_validate(body))
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

    sweeper = ExpirySweeper(redis, store, redis_keys.LIMIT_EXPIRIES)
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


# --- 2. TTLs ---------------------------------------------------------------------------------------------

#: Keys without a TTL that are fine: one per deployment, or bounded by something that is (see
#: docs/redis-keys.md, "Lifetimes").
UNBOUNDED_OK = (
    b"dramatiq:",
    b"stream:",
    b"quotes:",
    b"limit:",
    b"sniper:",
    b"sim:seed",
    b"sim:epoch",
    b"sim:venue-events:until",
    b"auth:api-keys",
    redis_keys.RESTING_PER_OWNER.encode(),
)


async def test_every_key_an_ended_order_leaves_behind_expires(redis, settings, worker):
    async with api(settings) as (_, client):
        http = await client("10.0.0.3")
        ids = []
        for body in (MARKET, MARKET, LIMIT, SNIPER):
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
    assert any(key.startswith(b"sim:nonce:") for key in ledger_keys)  # the chain's keys were there, with TTLs
    assert any(key.startswith(b"sim:order-txs:") for key in ledger_keys)


async def test_the_simulated_chain_forgets_after_its_retention(redis):
    ledger = RedisLedger(redis, retention_s=1234)
    record = TxRecord(
        tx_hash="tx-1", order_id="order-1", attempt=1, dex=Dex.RAYDIUM, token_in="SOL", token_out="USDC",
        amount_in=Decimal(1), min_amount_out=Decimal(1), submitted_at=0.0, lands_at=0.0,
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
                        pipe.xadd(redis_keys.EVENTS_STREAM, {"o": str(uuid4()), "u": "crowd", "e": payload})
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
