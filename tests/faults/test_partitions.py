"""Partitions, not crashes: a process that is alive, keeps its state, and cannot reach Redis for a while.

A crash is the easy case for the engine (the dead process never speaks again). A partitioned execution worker
comes back, with orders half-driven in memory, commands queued on sockets that the kernel delivers once the
link returns, and a lease that expired while it was away. A partitioned API comes back with WebSockets whose
event reader stalled. Here Redis lives in a namespace of its own (netns.py); one execution worker and one API
run each in a namespace whose only link to Redis the test takes down, while a second worker and a second API
(root namespace, over Redis's unix socket) keep going, then brings back.

Checked: every order ends exactly once (one transaction executed on the simulated chain, one terminal event,
events seq 1..n) with invariants.py over the whole run; the returning worker learns it lost the order (its
writes are refused); WebSocket clients that reconnect with `?after=` see every event once and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
import websockets

from shared import redis_keys
from shared.domain.lifecycle import is_terminal
from shared.persistence.batch import make_engine
from shared.persistence.migrate import upgrade
from shared.venues.ledger import order_transactions_key
from tests.faults import netns
from tests.faults.invariants import Verdict, settle
from tests.support.databases import create_scratch_database, drop_database
from tests.support.processes import MODULES, ServiceProcess, free_port

#: The lease a worker holds on an order, shortened (from 15 s) so a partition outlasts it within the test.
LEASE_MS = 2000
ENGINE_ENV = {
    "SIM_SEED": "partitions",
    "SIM_LATENCY_SCALE": "2.5",  # an order takes ~6 s, most of it waiting for its transaction to land
    "SIM_FAILURE_RATE": "0",
    "SIM_DROP_RATE": "0",
    "ORDER_LEASE_MS": str(LEASE_MS),
    "WORKER_HEARTBEAT_TIMEOUT_MS": "3000",  # the cut-off worker's messages are handed back after 3 s...
    "WORKER_MAINTENANCE_CHANCE": "1000000",  # ...at the other worker's next fetch (a sweep on every one)
    "WORKER_DRAIN_S": "1",
    "RETRY_MIN_BACKOFF_MS": "300",
    "RETRY_MAX_BACKOFF_MS": "2000",
    "RATE_LIMIT_PER_S": "1000",
    "LOG_JSON": "1",  # lines with an orderId, to tell which orders the cut-off worker held
    "PYTHONUNBUFFERED": "1",
}
#: After the heal, how long the returning worker is given to say what it does with the orders it held (its
#: executor retries Redis every 2 s at most).
RETURN_WATCH_S = 4.0
#: Longer than event_feed.QUIET_RECHECK_S: followers on the cut-off API go to Redis and find it gone.
API_PARTITION_S = 7.0
#: A client that hears nothing for this long assumes its stream stalled and reconnects with `?after=`.
CLIENT_STALL_S = 2.0
SETTLE_S = 40
#: What the executor logs when an order ends (executor._confirm), and when it learns it lost an order: its lease
#: is gone (seen by the lease keeper, or on coming back from an outage) or its write was refused by the seq CAS.
TERMINAL_LOG = ("confirmed on", "failed on")
NOTICED = ("lost the order's lease", "another writer moved the order on")


@dataclass
class PartitionEngine:
    topology: netns.Topology
    worker_host: netns.Host
    api_host: netns.Host
    root_api: str  # the API in the root namespace: never cut off
    ns_api: str  # the API in its own namespace, through a relay to its loopback
    worker_cut: ServiceProcess  # the execution worker in its own namespace
    worker_root: ServiceProcess
    api_cut: ServiceProcess  # the API in its own namespace
    redis: redis.Redis
    db: sa.Engine
    log_dir: Path
    accepted: set[str] = field(default_factory=set)

    def submit(self, api: str | None = None, amount: str = "0.5") -> str:
        """A market order, retried with its Idempotency-Key until the API answers 200."""
        key, body = f"part-{uuid.uuid4()}", {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": amount}
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.post(
                    f"{api or self.root_api}/api/orders/execute", json=body, headers={"Idempotency-Key": key}, timeout=5
                )
                if response.status_code == 200:
                    order_id: str = response.json()["orderId"]
                    self.accepted.add(order_id)
                    return order_id
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"order not accepted: {body}")
            time.sleep(0.2)

    def status(self, order_id: str) -> str:
        return (self.redis.hget(redis_keys.order(order_id), "status") or b"").decode()

    def events(self, order_id: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.redis.lrange(redis_keys.order_events(order_id), 0, -1)]

    def executions(self, order_id: str) -> list[str]:
        """Transactions the simulated chain executed for the order."""
        done = []
        for tx in self.redis.smembers(order_transactions_key(order_id)):
            if self.redis.hget(redis_keys.venue_transaction(tx.decode()), "status") == b"confirmed":
                done.append(tx.decode())
        return done


def _log_lines(service: ServiceProcess, since: int = 0) -> list[dict[str, Any]]:
    """The service's JSON log lines from byte offset `since` (other lines, e.g. tracebacks, skipped)."""
    lines = []
    for raw in service.log_path.read_bytes()[since:].decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            line = json.loads(raw)
            if isinstance(line, dict):
                lines.append(line)
    return lines


def _wait_for(what: str, check: Callable[[], object], timeout_s: float, every_s: float = 0.1) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)
    return time.monotonic() - began


def _wait_http(url: str, service: ServiceProcess, timeout_s: float = 60) -> None:
    def up() -> bool:
        if not service.alive:
            raise AssertionError(f"{service.name} exited:\n{service.log()[-3000:]}")
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    _wait_for(f"{service.name} at {url}", up, timeout_s)


@pytest.fixture(scope="module")
def partition_engine(fault_servers, tmp_path_factory) -> Iterator[PartitionEngine]:
    if reason := netns.unavailable():
        pytest.skip(f"partition tests need network namespaces: {reason}")
    began = time.monotonic()
    work_dir = tmp_path_factory.mktemp("partitions")
    topology = netns.Topology(work_dir / "net")
    database_url = None
    client = db = None
    try:
        topology.build()
        worker_host, api_host = topology.add_host("wrk"), topology.add_host("api")
        topology.start_redis()
        client = redis.Redis.from_url(topology.redis_unix_url, socket_timeout=10)
        # A database of this module's own: invariants.py reads every order PostgreSQL holds, and other fault
        # tests leave theirs in the shared one.
        database_url = create_scratch_database(fault_servers.database_url, "partitions")
        upgrade(database_url)
        db = make_engine(database_url)
        log_dir = work_dir / "logs"
        log_dir.mkdir()

        def start(name: str, index: int, host: netns.Host | None = None, **extra: str) -> ServiceProcess:
            env = {
                **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")},
                **ENGINE_ENV,
                "REDIS_URL": topology.redis_tcp_url if host else topology.redis_unix_url,
                "DATABASE_URL": database_url,
                "METRICS_PORT": str(free_port()),
                **extra,
            }
            return topology.spawn(name, MODULES[name], env, log_dir / f"{name}-{index}.log", host)

        root_port, ns_port = free_port(), free_port()
        root_api = start("api", 0, API_PORT=str(root_port))
        ns_api = start("api", 1, api_host, API_PORT=str(ns_port))
        start("db-sync", 0)
        worker_root = start("execution-worker", 0)
        worker_cut = start("execution-worker", 1, worker_host)
        engine = PartitionEngine(
            topology=topology,
            worker_host=worker_host,
            api_host=api_host,
            root_api=f"http://127.0.0.1:{root_port}",
            ns_api=f"http://127.0.0.1:{topology.forward(api_host, ns_port)}",
            worker_cut=worker_cut,
            worker_root=worker_root,
            api_cut=ns_api,
            redis=client,
            db=db,
            log_dir=log_dir,
        )
        _wait_http(engine.root_api, root_api)
        _wait_http(engine.ns_api, ns_api)
        for worker in (worker_root, worker_cut):
            _wait_for(f"{worker.log_path.name} consuming", lambda w=worker: "consuming" in w.log(), 60)
        print(f"\n[partitions] topology {topology.redis_ns} + {worker_host.ns}, {api_host.ns}; engine up in "
              f"{time.monotonic() - began:.1f} s; logs in {log_dir}", flush=True)  # fmt: skip
        yield engine
    finally:
        topology.close()  # first: it must run whatever failed before or after it
        if client is not None:
            client.close()
        if db is not None:
            db.dispose()
        if database_url is not None:
            drop_database(database_url)
    left = topology.leftovers()  # only after a clean run: a failure's own error must not be masked by this
    assert not left, f"namespaces left behind: {left}"


def _check_whole_run(engine: PartitionEngine) -> Verdict:
    verdict, waited = settle(engine.redis, engine.db, engine.accepted, SETTLE_S)
    counts = verdict.counts()
    print(f"[partitions] invariants after {waited:.1f} s: {verdict.orders} orders {verdict.by_status}, {counts}")
    assert verdict.ok, f"{counts}: {[f'{v.kind} {v.order_id}: {v.detail}' for v in verdict.violations[:10]]}"
    assert counts["lost"] == counts["duplicated"] == counts["gap"] == 0
    return verdict


# --- an execution worker cut off from Redis mid-order ------------------------------------------------------
def test_worker_cut_off_mid_order_loses_its_lease_and_the_order_ends_once(partition_engine: PartitionEngine):
    engine, worker, other = partition_engine, partition_engine.worker_cut, partition_engine.worker_root
    log_from = worker.log_path.stat().st_size
    submitted: list[str] = []

    def held_by_cut_off_worker() -> list[str]:
        seen = {line["orderId"] for line in _log_lines(worker, log_from) if "orderId" in line}
        return [oid for oid in submitted if oid in seen and not is_terminal(engine.status(oid))]

    # A trickle rather than a burst, so both workers fetch some (one fetch may take up to its in-flight limit).
    def trickle_until_held() -> bool:
        submitted.append(engine.submit(amount=f"0.{len(submitted) + 10}"))
        return len(held_by_cut_off_worker()) >= 2 or len(submitted) >= 40

    _wait_for("the namespaced worker to hold orders", trickle_until_held, 30, 0.2)
    held = held_by_cut_off_worker()
    assert len(held) >= 2, f"the namespaced worker never held two orders at once ({len(submitted)} submitted)"
    seq_at_cut = {oid: len(engine.events(oid)) for oid in held}
    its_leases = {oid: engine.redis.get(redis_keys.order_lease(oid)) for oid in held}
    cut_log_at, other_log_at = worker.log_path.stat().st_size, other.log_path.stat().st_size
    engine.worker_host.cut()
    cut_at = time.monotonic()
    stages = sorted(engine.status(oid) for oid in held)
    print(f"[partitions] cut {engine.worker_host.ns} off Redis holding {len(held)} orders at {stages}", flush=True)

    during = [engine.submit() for _ in range(3)]  # the engine goes on without it

    # Heal as soon as the other worker has taken every held order over (holds its lease, or moved it on), so the
    # worker comes back while another drives its orders: the case a crash never shows.
    def taken_over() -> bool:
        return all(
            len(engine.events(oid)) > seq_at_cut[oid]
            or engine.redis.get(redis_keys.order_lease(oid)) not in (None, its_leases[oid])
            for oid in held
        )

    _wait_for("the other worker to take the cut-off worker's orders over", taken_over, 25, 0.1)
    time.sleep(max(0.0, LEASE_MS / 1000 * 1.5 - (time.monotonic() - cut_at)))
    partition_s = time.monotonic() - cut_at
    ended_meanwhile = sum(is_terminal(engine.status(oid)) for oid in held)
    engine.worker_host.heal()
    print(f"[partitions] healed after {partition_s:.1f} s (lease {LEASE_MS} ms); the other worker had taken all "
          f"{len(held)} over, {ended_meanwhile} to their end", flush=True)  # fmt: skip

    _wait_for("the held orders to end", lambda: all(is_terminal(engine.status(oid)) for oid in held), 30)
    after = [engine.submit() for _ in range(3)]  # the engine, the returning worker included, takes orders again

    def after_heal_handled() -> bool:
        return any(line.get("orderId") in after for line in _log_lines(worker, cut_log_at)) or all(
            is_terminal(engine.status(oid)) for oid in after
        )

    _wait_for("orders after the heal to be handled", after_heal_handled, 30)
    time.sleep(RETURN_WATCH_S)  # the returning worker's last word on the orders it held

    verdict = _check_whole_run(engine)
    back = _log_lines(worker, cut_log_at)
    for oid in held:
        said = [line["msg"] for line in back if line.get("orderId") == oid and "driving on" not in line["msg"]]
        ended_by = [
            name
            for name, lines in (("returning", back), ("other", _log_lines(other, other_log_at)))
            if any(line.get("orderId") == oid and line["msg"].startswith(TERMINAL_LOG) for line in lines)
        ]
        events = engine.events(oid)
        print(f"[partitions]   {oid[:8]}: {[e['status'] for e in events]}, ended by the {ended_by} worker; the "
              f"returning one said {said}", flush=True)  # fmt: skip
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), f"{oid}: gaps {events}"
        assert sum(is_terminal(e["status"]) for e in events) == 1, f"{oid}: terminal events {events}"
        expected = [events[-1]["txHash"]] if events[-1]["status"] == "confirmed" else []
        assert engine.executions(oid) == expected, f"{oid} {events[-1]['status']}, executed {engine.executions(oid)}"
        assert ended_by == ["other"], f"{oid}: ended by {ended_by}: the returning worker drove an order it had lost"
        assert any(n in msg for msg in said for n in NOTICED), f"{oid}: the returning worker never noticed: {said}"
    assert worker.alive, f"the returning worker exited:\n{worker.log()[-3000:]}"
    assert verdict.by_status.get("confirmed", 0) >= len(submitted) + len(during) + len(after)


# --- an API holding WebSockets cut off from Redis ----------------------------------------------------------
@dataclass
class Follower:
    """One client following one order: what it does when its stream stalls, and all it received."""

    order_id: str
    policy: str  # "stay": waits for the server | "same": reconnects to the same API | "other": to the other API
    received: list[dict[str, Any]] = field(default_factory=list)
    connections: list[str] = field(default_factory=list)  # which API served each connection, in turn
    endings: list[str] = field(default_factory=list)  # why each connection ended

    @property
    def after(self) -> int:
        return self.received[-1]["seq"] if self.received else 0

    @property
    def done(self) -> bool:
        return bool(self.received) and is_terminal(self.received[-1]["status"])


async def _follow(follower: Follower, apis: dict[str, str], deadline: float) -> None:
    """Follow the order to its terminal event, reconnecting with `?after=<last seq received>` whenever a
    connection ends early or (unless the policy is to stay) hears nothing for CLIENT_STALL_S."""
    while not follower.done and time.monotonic() < deadline:
        where = "other" if follower.policy == "other" and follower.connections else "cut"
        url = apis[where].replace("http://", "ws://") + f"/ws/orders/{follower.order_id}?after={follower.after}"
        stall = None if follower.policy == "stay" else CLIENT_STALL_S
        try:
            async with websockets.connect(url, open_timeout=3, close_timeout=1) as ws:
                follower.connections.append(where)
                while not follower.done:
                    raw = await asyncio.wait_for(ws.recv(), max(0.1, min(stall or 1e9, deadline - time.monotonic())))
                    message = json.loads(raw)
                    if message.get("type") == "error":
                        follower.endings.append(f"error {message.get('error')}")
                        break
                    follower.received.append(message)
        except TimeoutError:
            follower.endings.append("stalled")
        except websockets.ConnectionClosed as exc:
            follower.endings.append(f"closed {exc.rcvd.code if exc.rcvd else '?'}")
        except (OSError, websockets.InvalidHandshake) as exc:
            follower.endings.append(type(exc).__name__)
        if not follower.done:
            await asyncio.sleep(0.2)


def test_api_cut_off_with_websockets_open_loses_no_event_for_clients_that_resume(partition_engine: PartitionEngine):
    engine = partition_engine
    api_log = engine.api_cut
    log_from = api_log.log_path.stat().st_size
    apis = {"cut": engine.ns_api, "other": engine.root_api}
    orders = [engine.submit(amount=f"1.{i}") for i in range(9)]
    followers = [Follower(oid, ("stay", "same", "other")[i % 3]) for i, oid in enumerate(orders)]

    async def scenario() -> float:
        deadline = time.monotonic() + 60
        following = [asyncio.create_task(_follow(f, apis, deadline)) for f in followers]
        while not all(f.received for f in followers):  # every socket live through the API about to be cut
            await asyncio.sleep(0.05)
        engine.api_host.cut()
        cut_at = time.monotonic()
        print(f"[partitions] cut {engine.api_host.ns} (an API) off Redis with {len(followers)} sockets following "
              f"orders at seq {[f.after for f in followers]}", flush=True)  # fmt: skip
        await asyncio.sleep(API_PARTITION_S)
        engine.api_host.heal()
        print(f"[partitions] healed the API after {time.monotonic() - cut_at:.1f} s", flush=True)
        await asyncio.gather(*following)
        return cut_at

    asyncio.run(scenario())
    for follower in followers:
        events = engine.events(follower.order_id)
        seqs = [m["seq"] for m in follower.received]
        print(f"[partitions]   {follower.policy:5} {follower.order_id[:8]}: seqs {seqs} over {follower.connections}, "
              f"ends {follower.endings}", flush=True)  # fmt: skip
        assert follower.done, f"{follower.order_id}: never saw its terminal event ({follower.endings})"
        assert [m["seq"] for m in follower.received] == list(range(1, len(events) + 1)), follower
        assert follower.received == events, f"{follower.order_id}: received events differ from the order's log"
    outage = [line["msg"] for line in _log_lines(api_log, log_from) if "event reader lost Redis" in line.get("msg", "")]
    assert outage, "the cut-off API's event reader never lost Redis: was it cut off at all?"
    moved = [f for f in followers if f.policy == "other" and "other" in f.connections]
    assert moved, "no client resumed through the other API"
    _check_whole_run(engine)
