"""A Sentinel-managed Redis that fails over: the engine's clients, built by the one factory from settings that
name the sentinels, follow the master wherever the sentinels move it.

Real servers on loopback (tests/support/sentinel.py): a primary, two replicas, three sentinels. Each failover
test builds its clients once, uses them, moves the master (`kill -9` of the primary, or `SENTINEL FAILOVER`),
and then keeps using the *same* objects until every one of them has worked against the new master. How long
that took after the fault is printed (`-s` shows it) as each client kind's window."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

import dramatiq
import orjson
import pytest
import redis
from dramatiq import Message
from dramatiq.broker import MessageProxy
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError

from services.api.guards.rate_limit import RateLimit
from services.cli.runtime import run_with_redis
from shared import redis_keys, redis_sentinel
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.domain.orders import OrderRequest, accept
from shared.event_feed import EventHub
from shared.execution import executor as executor_module
from shared.execution.broker import DurableRetries, build_broker
from shared.execution.messages import execute_order_message
from shared.observability.redis_gauges import RedisGauges, execution_backlog
from shared.redis_client import REDIS_UNAVAILABLE, redis_client, sync_redis_client
from shared.redis_replicas import NotReplicated, barrier, replicas_in_sync
from shared.settings import Settings
from shared.store.order_store import CreateOutcome
from shared.venues.base import Dex
from shared.venues.ledger import InMemoryLedger
from tests.integration.test_executor import ScriptedVenue, executor
from tests.support.orders import make_store, place_market_order
from tests.support.sentinel import (
    DATA_PASSWORD,
    MASTER_NAME,
    REDIS_SERVER,
    SentinelCluster,
    sentinel_cluster,
    wait_until,
)

pytestmark = pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="needs redis-server")

#: Longest a client may take to work against the new master after the fault (the sentinels' own failover
#: is a few seconds with down-after 1 s; anything near this deadline is a failure, not a slow pass).
WINDOW_DEADLINE_S = 25.0
POLL_S = 0.02
TEST_QUEUE = "sentinel-test"
#: Orders in flight through the failover (the execution worker's kind of client).
ORDERS_IN_FLIGHT = 5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with sentinel_cluster(tmp_path_factory.mktemp("sentinel")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def engine_settings(cluster) -> Settings:
    return Settings(**cluster.settings_env(), sim_latency_scale=0, sim_failure_rate=0, sim_seed="sentinel")


def _on_master(cluster: SentinelCluster) -> redis.Redis:
    """A plain client of whatever node the sentinels name master now: the test's view, not the engine's."""
    return cluster.master().client(DATA_PASSWORD)


def _gauges_ok(gauges: RedisGauges) -> bool:
    ok = [family for family in gauges.collect() if family.name == "engine_redis_gauges_ok"]
    return ok[0].samples[0].value == 1


async def test_every_client_kind_writes_and_reads_through_the_master(cluster, engine_settings):
    token = uuid.uuid4().hex
    # The services' asyncio clients: plain (quote-stream, limit and sniper workers), bounded and
    # auto-pipelined (execution worker, API), one connection of its own (the API's event reader).
    plain = redis_client(engine_settings)
    bounded = redis_client(engine_settings, max_connections=8, wait_for_connection_s=5, auto_pipeline=True)
    reader = redis_client(engine_settings, single_connection=True)
    try:
        for name, client in (("plain", plain), ("bounded", bounded), ("reader", reader)):
            await client.set(f"sentinel:{name}", token)
            assert await client.get(f"sentinel:{name}") == token.encode()
        # The engine's own writes: an order placed by its Lua script, read back.
        store = make_store(bounded)
        order = await place_market_order(store)
        assert (await store.load(order.order_id)) is not None
        # The API's rate limit (the `limits` library on the API's sentinel-managed pool).
        assert await RateLimit(bounded, per_s=100, window_s=1).hit("a-client") is None
    finally:
        for client in (plain, bounded, reader):
            await client.aclose()
    # The blocking clients: dramatiq's broker (its sync client), db-sync's, the metrics scrapes'.
    broker = build_broker(engine_settings)
    broker.declare_queue(TEST_QUEUE)
    broker.enqueue(Message(queue_name=TEST_QUEUE, actor_name="noop", args=(), kwargs={}, options={}))
    sync = sync_redis_client(engine_settings, socket_timeout=5)
    sync.set("sentinel:sync", token)
    gauges = RedisGauges(engine_settings, [execution_backlog()])
    assert _gauges_ok(gauges)
    # The CLI builds its client from the settings too (on a loop of its own, as a command does).
    read = asyncio.to_thread(run_with_redis, engine_settings, lambda client: client.get("sentinel:sync"))
    assert await read == token.encode()

    master = _on_master(cluster)  # every write above is on the node the sentinels name
    assert {master.get(f"sentinel:{name}") for name in ("plain", "bounded", "reader", "sync")} == {token.encode()}
    assert master.hlen(f"{redis_keys.dramatiq_namespace(0)}:{TEST_QUEUE}.msgs") >= 1
    assert master.exists(redis_keys.order(str(order.order_id)))
    for client in (broker.client, sync, gauges.client):
        client.close()


class GatedVenue(ScriptedVenue):
    """A venue whose quotes wait for the test: executions are held mid-flight while the master moves."""

    def __init__(self, dex, ledger, gate: asyncio.Event) -> None:
        super().__init__(dex, ledger)
        self.gate = gate

    async def quote(self, *args):
        await self.gate.wait()
        return await super().quote(*args)


async def _until_it_works(what: str, attempt, started: float) -> float:
    """Seconds from `started` until `attempt()` (a coroutine function) first succeeds; only "Redis cannot
    serve us now" errors may happen meanwhile, anything else fails the test."""
    last: BaseException | None = None
    while time.monotonic() - started < WINDOW_DEADLINE_S:
        try:
            if await attempt() is not False:
                return time.monotonic() - started
        except REDIS_UNAVAILABLE as exc:
            last = exc
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"{what} did not work against the new master within {WINDOW_DEADLINE_S} s: {last!r}")


async def _failover_round(cluster: SentinelCluster, settings: Settings, how: str, monkeypatch) -> dict[str, float]:
    """Build every kind of client, use it, move the master (`how`), and time each one back to work."""
    monkeypatch.setattr(executor_module, "REDIS_RETRY_MIN_S", 0.02)
    monkeypatch.setattr(executor_module, "REDIS_RETRY_MAX_S", 0.2)
    if how == "kill -9":
        cluster.wait_out_the_failover_lockout()
    # Both replicas, so that both can be caught up below. After a manual failover the sentinels demote the old
    # master, which makes it the second replica, only at their next look at it.
    wait_until("both replicas to be in sync", lambda: cluster.replicas_in_sync(cluster.master()))
    old = cluster.master()
    bounded = redis_client(settings, max_connections=16, wait_for_connection_s=5, auto_pipeline=True)
    reader = redis_client(settings, single_connection=True)
    broker = build_broker(settings)
    broker.declare_queue(TEST_QUEUE)
    gauges = RedisGauges(settings, [execution_backlog()])
    store = make_store(bounded)
    hub = EventHub(reader)
    reading = asyncio.create_task(hub.run())
    gate = asyncio.Event()
    ledger = InMemoryLedger()
    run = executor(bounded, {dex: GatedVenue(dex, ledger, gate) for dex in Dex}, max_attempts=1)
    try:
        # Before: everything works, and what was written is on the replicas too (WAIT), so it survives.
        before = await place_market_order(store)
        broker.enqueue(Message(queue_name=TEST_QUEUE, actor_name="noop", args=(), kwargs={}, options={}))
        assert _gauges_ok(gauges)
        orders = [await place_market_order(store) for _ in range(ORDERS_IN_FLIGHT)]
        executions = [asyncio.create_task(run.execute(o.order_id, attempt=1)) for o in orders]
        await asyncio.sleep(0.05)  # each has taken its lease and waits on its quote
        # So what was acknowledged survives the primary: on every replica, since the sentinels may promote one
        # that a WAIT 1 did not count (their view of the offsets is a second old), and the others then resync
        # from it, losing what only they had.
        wait_until("every replica to hold every write", lambda: cluster.replicas_caught_up(old))

        started = time.monotonic()
        if how == "kill -9":
            cluster.kill_master()
        else:
            cluster.manual_failover()
        gate.set()  # the executions go on at once: their next writes meet the failover
        # A probe counts once its client worked *and* is connected to a node other than the old master: a
        # manual failover returns at once and demotes the master a moment later, and until then the old
        # master still takes writes.
        moved_from = ("127.0.0.1", old.port)

        async def asyncio_client() -> bool:
            await place_market_order(store)
            return bounded.connection_pool.master_address not in (None, moved_from)

        async def broker_client() -> bool:
            message = Message(queue_name=TEST_QUEUE, actor_name="noop", args=(), kwargs={}, options={})
            await asyncio.to_thread(broker.enqueue, message)
            return broker.client.connection_pool.master_address not in (None, moved_from)

        async def scrape() -> bool:
            ok = await asyncio.to_thread(_gauges_ok, gauges)
            return ok and gauges.client.connection_pool.master_address not in (None, moved_from)

        mark = str(uuid.uuid4())

        async def event_reader() -> bool:
            with hub.subscribe_order(uuid.UUID(mark)) as live:
                await bounded.xadd(redis_keys.events_stream(0), {"o": mark, "e": orjson.dumps({"seq": 1})})
                try:
                    await asyncio.wait_for(live.get(), 0.25)
                except TimeoutError:
                    return False  # written, not read yet: the reader is still reconnecting
                return reader.connection.port != old.port

        async def executions_done() -> None:
            await asyncio.gather(*executions)

        async def sentinels_agree() -> float:
            port = await asyncio.to_thread(cluster.promoted_other_than, old.port)
            windows_port.append(port)
            return time.monotonic() - started

        windows_port: list[int] = []
        windows = dict(
            zip(
                ("sentinels agree", "asyncio client", "broker (sync)", "metrics scrape", "event reader", "executions"),
                await asyncio.gather(
                    sentinels_agree(),
                    _until_it_works("the asyncio client", asyncio_client, started),
                    _until_it_works("the broker's client", broker_client, started),
                    _until_it_works("the gauges' client", scrape, started),
                    _until_it_works("the event reader", event_reader, started),
                    _until_it_works("the executions", executions_done, started),
                ),
                strict=True,
            )
        )
        new_port = windows_port[0]
        if how == "kill -9":
            cluster.elected()

        # After: the same objects work against the new master, and nothing acknowledged before is lost.
        assert new_port != old.port
        assert (await store.load(before.order_id)) is not None
        for order in orders:  # every execution rode the failover out in its only attempt
            state = await store.load(order.order_id)
            assert state is not None and state.status == "confirmed" and state.attempt == 1, state
            assert len(await ledger.executions_for(str(order.order_id))) == 1
        master = _on_master(cluster)
        assert master.exists(redis_keys.order(str(before.order_id)))
        assert bounded.connection_pool.master_address[1] == new_port
    finally:
        gate.set()
        await hub.stop(reading)
        await reader.aclose()
        await bounded.aclose()
        broker.client.close()
        gauges.close()
    if how == "kill -9":
        cluster.restart_as_replica(old)  # whole again for the next round
    print(f"\nFAILOVER WINDOW ({how}): " + ", ".join(f"{k} {v:.2f} s" for k, v in windows.items()))
    return windows


@pytest.mark.parametrize("how", ["kill -9", "SENTINEL FAILOVER", "kill -9 ", "SENTINEL FAILOVER "])
async def test_the_same_clients_follow_the_master_through_a_failover(cluster, engine_settings, how, monkeypatch):
    windows = await _failover_round(cluster, engine_settings, how.strip(), monkeypatch)
    assert max(windows.values()) < WINDOW_DEADLINE_S


async def test_a_client_that_gets_readonly_reconnects_to_the_master(cluster, engine_settings):
    """A connection open to a node the client still believes is the master but that is a replica now (a
    master demoted before the sentinels' next answer) gets READONLY on its next write: the Sentinel-managed
    client drops it and says ConnectionError (what every caller retries), and its next command asks the
    sentinels and goes to the master. A plain client is told ReadOnlyError, which callers retry too."""
    # After a manual failover the old master is demoted only at the sentinels' next look at it: until both
    # replicas replicate, "a replica" might still be that master, and take the write.
    wait_until("both replicas to be in sync", lambda: cluster.replicas_in_sync(cluster.master()))
    replica = cluster.a_replica()
    demoted = ("127.0.0.1", replica.port)
    # Writes of an acknowledged client go through a pipeline of the pool; this one's held connection is the point.
    reader = redis_client(engine_settings, single_connection=True, acknowledged_writes=False)
    sync = sync_redis_client(engine_settings)
    try:
        await reader.ping()  # connected to the master
        # Its background look at the sentinels (started by that command) must not undo the belief set below.
        await asyncio.gather(*redis_sentinel._RECHECKS)
        connection, pool = reader.connection, reader.connection_pool
        # The client's belief, not yet corrected by its next look at the sentinels, and its connection.
        pool.master_address, pool._recheck_at = demoted, time.monotonic() + 60
        await connection.disconnect()
        await connection.connect_to(demoted)
        with pytest.raises(RedisConnectionError, match="previous master is now a slave"):
            await reader.set("sentinel:readonly", "async")
        await reader.set("sentinel:readonly", "async")  # reconnected through the sentinels
        assert connection.port == cluster.master_port()

        sync.ping()
        for thread in threading.enumerate():  # the same for the blocking client's look, in a thread
            if thread.name == "sentinel-recheck":
                thread.join()
        proxy = sync.connection_pool.proxy
        held = sync.connection_pool.get_connection()
        proxy.master_address, proxy._recheck_at = demoted, time.monotonic() + 60
        held.disconnect()
        held.connect_to(demoted)
        held.send_command("SET", "sentinel:readonly", "sync")
        with pytest.raises(RedisConnectionError, match="previous master is now a slave"):
            held.read_response()
        sync.connection_pool.release(held)
        sync.set("sentinel:readonly", "sync")
        assert _on_master(cluster).get("sentinel:readonly") == b"sync"
    finally:
        await reader.aclose()
        sync.close()

    plain = replica.client(DATA_PASSWORD)
    with pytest.raises(ReadOnlyError) as refused:
        plain.set("sentinel:readonly", "plain")
    assert isinstance(refused.value, REDIS_UNAVAILABLE)  # what the loops, the CLI and the executor retry on


def _until_the_sentinels_see_both_replicas_in_sync(cluster: SentinelCluster) -> None:
    """After an earlier test's manual failover, the sentinels see the demoted master as a replica only at their
    next look at it (some ten seconds): until then a write waits for the one replica they count."""

    def both() -> bool:
        master = ("127.0.0.1", cluster.master_port())
        return replicas_in_sync(cluster.sentinel_client().sentinel_slaves(MASTER_NAME), master) == 2

    wait_until("the sentinels to see both replicas in sync", both)


async def test_a_write_counts_as_done_only_once_every_replica_in_sync_holds_it(cluster, engine_settings):
    """Every replica the sentinels see in sync must acknowledge a write before its caller goes on (WAIT on the
    same round trip); with the replicas frozen, the write is refused as NotReplicated (a ConnectionError, what
    every caller retries) and a reader's barrier is refused too, while reads still answer."""
    _until_the_sentinels_see_both_replicas_in_sync(cluster)
    settings = engine_settings.model_copy(update={"redis_replica_ack_timeout_ms": 200})
    client = redis_client(settings)
    piped = redis_client(settings, auto_pipeline=True)
    try:
        assert client.replica_count is not None
        assert await client.replica_count.required() == 2
        await client.set("acks:plain", "1")
        with cluster.replicas_frozen():
            with pytest.raises(NotReplicated):
                await client.set("acks:plain", "2")
            with pytest.raises(NotReplicated):
                await asyncio.gather(piped.set("acks:piped", "1"), piped.incr("acks:counter"))
            with pytest.raises(NotReplicated):
                await barrier(client)
            assert await client.get("acks:plain") == b"2"  # on the master: not acknowledged is not undone
        await asyncio.gather(client.set("acks:plain", "3"), piped.set("acks:piped", "2"), barrier(client))
    finally:
        await client.aclose()
        await piped.aclose()


async def test_a_submission_rides_out_unacknowledged_writes_and_is_created_once(cluster, engine_settings):
    """A create whose WAIT falls short is sent again (same order id) until the replicas acknowledge it: the
    caller gets CREATED, not an error, and the order exists once."""
    _until_the_sentinels_see_both_replicas_in_sync(cluster)
    settings = engine_settings.model_copy(update={"redis_replica_ack_timeout_ms": 100})
    client = redis_client(settings)
    try:
        store = make_store(client)
        order = accept(OrderRequest.model_validate({"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}))
        first = OrderEvent(order.order_id, 1, OrderStatus.PENDING, order.type.value)
        message = execute_order_message(order.order_id)
        with cluster.replicas_frozen():
            submitted = asyncio.ensure_future(store.create(order, first, message=message, ride_out_s=10.0))
            await asyncio.sleep(0.5)
            assert not submitted.done()  # sent, and sent again, waiting for the replicas: not answered
        result = await submitted
        assert result.outcome is CreateOutcome.CREATED and result.order_id == order.order_id
        assert await client.llen(redis_keys.order_events(order.order_id)) == 1
    finally:
        await client.aclose()


def test_a_retry_counts_as_scheduled_only_once_the_replicas_hold_it(cluster, engine_settings):
    """A failed attempt's retry is enqueued and then its original acked; lost with a failed master, the retry
    would take the ack with it and the original would sit under a live worker for good. So the retry's
    scheduling waits for the replicas: with them frozen, it is not done; thawed, it is, and in the queue."""
    _until_the_sentinels_see_both_replicas_in_sync(cluster)
    settings = engine_settings.model_copy(update={"redis_replica_ack_timeout_ms": 100})
    broker = build_broker(settings)
    retried_queue = "sentinel-retry"
    try:
        dramatiq.actor(lambda: None, actor_name="flaky", queue_name=retried_queue, broker=broker, max_retries=3)
        retries = next(m for m in broker.middleware if isinstance(m, DurableRetries))
        message = MessageProxy(Message(queue_name=retried_queue, actor_name="flaky", args=(), kwargs={}, options={}))
        scheduled = threading.Event()

        def fail_once() -> None:
            retries.after_process_message(broker, message, exception=RuntimeError("venue down"))
            scheduled.set()

        with cluster.replicas_frozen():
            worker = threading.Thread(target=fail_once)
            worker.start()
            assert not scheduled.wait(0.6)  # enqueued on the master, not yet on the replicas: not done
        assert scheduled.wait(15)
        worker.join()
        delayed = _on_master(cluster).llen(redis_keys.dramatiq_delayed(0, retried_queue))
        assert delayed >= 1  # once, or twice if a try landed unconfirmed: a duplicate the executor absorbs
    finally:
        broker.client.close()
