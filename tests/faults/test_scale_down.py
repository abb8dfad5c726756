"""Scale-down under load: replicas get SIGTERM (what KEDA/HPA sends a pod it removes), not SIGKILL.

Two replicas of every worker (one API), steady load, then:

1. execution-worker replica 0, while it holds orders mid-execution, gets SIGTERM with the default drain
   (`WORKER_DRAIN_S=10`): it must finish what it holds and exit within the drain plus its shutdown;
   db-sync replica 0 gets SIGTERM while it holds stream entries unacknowledged, and must ack them first.
2. execution-worker replica 0 comes back with `WORKER_DRAIN_S=0.5`, shorter than a swap (2-3 s here), and
   gets SIGTERM again mid-execution: it must hand back what it holds, and the other replica must pick each
   order up at once (well inside `ORDER_LEASE_MS`), not when crash recovery would.
3. limit-worker, sniper-worker (replica 0 each) and the API get SIGTERM too; the API is started again.

Crash recovery is left at its defaults here (`WORKER_HEARTBEAT_TIMEOUT_MS` 60 s, `ORDER_LEASE_MS` 15 s):
a graceful stop that leaned on it would show as pick-ups of 15-60 s and fail the bound below. Then the
load stops, and `invariants.settle` must find 0 lost, 0 executed twice, 0 stuck, 0 gaps and PostgreSQL in
agreement. Exit and pick-up times go to the terminal and to reports/scale-down.json.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy as sa
from dramatiq.worker import CONSUMER_RESTART_DELAY_SECS

from shared import redis_keys
from shared.domain.lifecycle import is_terminal
from shared.persistence.batch import make_engine
from shared.persistence.models import events_table, orders_table
from tests.faults import report
from tests.faults.injector import FaultInjector
from tests.faults.invariants import executing, settle
from tests.faults.load import LoadDriver
from tests.faults.test_fault_injection import ENGINE_ENV as FAULT_ENGINE_ENV
from tests.support.processes import ALL_SERVICES, Engine, ServiceProcess, start_engine

ENGINE_ENV = {
    **{k: v for k, v in FAULT_ENGINE_ENV.items() if k not in ("WORKER_HEARTBEAT_TIMEOUT_MS", "ORDER_LEASE_MS")},
    "SIM_LATENCY_SCALE": "1",  # a swap takes 2-3 s: a replica holds several, and 0.5 s cannot finish one
    "SIM_DROP_RATE": "0",  # a dropped transaction waits out its blockhash: no swap would promise 2-3 s
    "WORKER_DRAIN_S": "10",
}
ORDER_LEASE_S = 15.0  # the default ORDER_LEASE_MS: what a hand-back that left its leases behind would cost
REPLICAS = {name: 2 for name in ALL_SERVICES if name not in ("api", "quote-stream")}
LONG_DRAIN_S, SHORT_DRAIN_S = 10.0, 0.5
#: From the end of the drain to the process's exit. Mostly dramatiq's: `AsyncWorker.stop` pauses the consumer
#: threads, and a paused one sleeps CONSUMER_RESTART_DELAY_SECS (3 s) before it looks again, so it is joined
#: no sooner than that after SIGTERM; then the loop and the probes stop (~0.5 s).
SHUTDOWN_ALLOWANCE_S = CONSUMER_RESTART_DELAY_SECS + 2.0
#: Orders a replica must hold when it gets SIGTERM (at ~10 orders/s and 2-3 s each, two replicas hold ~10).
MIN_HELD = 5
#: A handed-back order must have a new holder this soon: far below ORDER_LEASE_S and the heartbeat timeout.
#: (An order whose attempt had failed waits its retry back-off, at most RETRY_MAX_BACKOFF_MS = 3 s.)
PICKUP_LIMIT_S = 5.0
POLL_S = 0.025
SETTLE_TIMEOUT_S = 60
ACKS_PREFIX = f"{redis_keys.dramatiq_namespace(0)}:__acks__."
EXECUTION_MESSAGES = redis_keys.dramatiq_messages(0)
HEARTBEATS = f"{redis_keys.dramatiq_namespace(0)}:__heartbeats__"


@dataclass
class Termination:
    service: str
    exit_s: float
    returncode: int | None
    held: int | None = None  # what it held when signalled (orders, or stream entries for db-sync)
    extra: dict[str, Any] = field(default_factory=dict)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _wait_exit(slot: ServiceProcess, signalled: float, limit_s: float) -> float:
    """Seconds from `signalled` until the process exited; kills it (and fails) past `limit_s`."""
    while slot.process.poll() is None:
        if time.monotonic() - signalled > limit_s:
            slot.kill()
            raise AssertionError(f"{slot.name} still running {limit_s} s after SIGTERM:\n{slot.log()[-3000:]}")
        time.sleep(0.01)
    return time.monotonic() - signalled


def _terminate(faults: FaultInjector, name: str, index: int, limit_s: float = 15.0) -> Termination:
    slot = faults.engine.replica(name, index)
    busy = faults.in_flight()
    signalled = time.monotonic()
    slot.process.send_signal(signal.SIGTERM)
    faults.note(f"SIGTERM {name}", f"SIGTERM {name} replica {index}", busy)
    return Termination(name, _wait_exit(slot, signalled, limit_s), slot.process.returncode)


def _in_flight_metric(slot: ServiceProcess) -> int | None:
    try:
        text = httpx.get(f"{slot.probes_url}/metrics", timeout=1).text
    except httpx.HTTPError:
        return None
    found = re.search(r"^engine_execution_in_flight (\S+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else None


def _held_by_worker(client: redis.Redis) -> dict[str, set[str]]:
    """dramatiq worker id -> ids of the orders whose execution messages it holds unacknowledged."""
    held: dict[str, set[str]] = {}
    for key in client.scan_iter(match=f"{ACKS_PREFIX}*.{redis_keys.EXECUTION_QUEUE}", count=1000):
        worker_id = _text(key)[len(ACKS_PREFIX) :].rsplit(".", 1)[0]
        message_ids = list(client.smembers(key))
        bodies = client.hmget(EXECUTION_MESSAGES, message_ids) if message_ids else []
        held[worker_id] = {json.loads(body)["args"][0] for body in bodies if body}
    return held


def _observe(client: redis.Redis, order_ids: list[str]) -> list[tuple[str | None, str | None]]:
    """(lease token, status) of each order, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for oid in order_ids:
        pipe.get(redis_keys.order_lease(oid))
        pipe.hget(redis_keys.order(oid), "status")
    raw = pipe.execute()
    return [
        (None if token is None else _text(token), None if status is None else _text(status))
        for token, status in zip(raw[::2], raw[1::2], strict=True)
    ]


def terminate_execution_worker(faults: FaultInjector, client: redis.Redis, index: int, drain_s: float) -> Termination:
    """SIGTERM an execution worker while it holds orders; follow each of them until it ends or has a new
    holder, and tell which of them this replica finished in its drain and which it handed back."""
    name = "execution-worker"
    slot = faults.engine.replica(name, index)
    deadline = time.monotonic() + 30
    while (_in_flight_metric(slot) or 0) < MIN_HELD:  # SIGTERM it only while it is busy
        assert time.monotonic() < deadline, f"replica {index} never held {MIN_HELD} orders:\n{slot.log()[-3000:]}"
        time.sleep(0.05)
    gauge = _in_flight_metric(slot)
    held = _held_by_worker(client)
    candidates = sorted(set().union(*held.values()))
    log_from = len(slot.log())
    signalled = time.monotonic()
    slot.process.send_signal(signal.SIGTERM)
    faults.note(f"SIGTERM {name}", f"SIGTERM {name} replica {index} (drain {drain_s} s)", gauge)
    # Poll every order any replica held: which replica the signalled one is shows only after it exits (its
    # dramatiq heartbeat stops while the other's goes on).
    seen: dict[str, list[tuple[float, str | None, str | None]]] = {oid: [] for oid in candidates}
    exit_s: float | None = None
    exit_wall = 0.0
    mine: set[str] | None = None
    while True:
        now = time.monotonic() - signalled
        for oid, (token, status) in zip(candidates, _observe(client, candidates), strict=True):
            seen[oid].append((now, token, status))
        if exit_s is None and slot.process.poll() is not None:
            exit_s, exit_wall = time.monotonic() - signalled, time.time()
        if exit_s is None and now > drain_s + SHUTDOWN_ALLOWANCE_S:
            slot.kill()
            raise AssertionError(f"execution-worker {index} still running {now:.1f} s after SIGTERM")
        if exit_s is not None and mine is None and time.time() > exit_wall + 1.0:
            beats = {_text(k): v / 1000 for k, v in client.zrange(HEARTBEATS, 0, -1, withscores=True)}
            stopped = [wid for wid in held if beats.get(wid, 0) < exit_wall + 0.3]
            assert len(stopped) == 1, f"cannot tell the stopped worker: {stopped} of {held}, beats {beats}"
            mine = held[stopped[0]]
        if mine is not None:
            handed_over = _handed_over(seen, mine, min(exit_s or drain_s, drain_s))
            if all(delay is not None for delay in handed_over.values()) or now > drain_s + PICKUP_LIMIT_S + 3:
                break
        time.sleep(POLL_S)
    assert exit_s is not None and mine is not None
    handed_back = re.findall(r"handing (\d+) unfinished messages back", slot.log()[log_from:])
    delays = [d for d in handed_over.values() if d is not None]
    ended = [_first_terminal(seen[oid]) for oid in mine if oid not in handed_over]
    return Termination(
        name,
        exit_s,
        slot.process.returncode,
        held=len(mine),
        extra={
            "drainS": drain_s,
            "inFlightGauge": gauge,
            "finishedInDrain": len(mine) - len(handed_over),
            "lastFinishedS": round(max((t for t in ended if t is not None), default=0.0), 3),
            "notFinishedInDrain": len(handed_over),
            "handedBackPerLog": int(handed_back[-1]) if handed_back else 0,
            "notPickedUp": sorted(oid for oid, d in handed_over.items() if d is None),
            "pickupS": _spread(delays),
        },
    )


def _handed_over(
    seen: dict[str, list[tuple[float, str | None, str | None]]], mine: set[str], boundary_s: float
) -> dict[str, float | None]:
    """For each of `mine` not finished by `boundary_s` (the end of the drain, or the exit if sooner): how
    long after it another holder took its lease or it ended (None: not yet)."""
    result: dict[str, float | None] = {}
    for oid in mine:
        before = [(token, status) for t, token, status in seen[oid] if t <= boundary_s]
        if any(status is not None and is_terminal(status) for _, status in before):
            continue
        old_tokens = {token for token, _ in before}
        result[oid] = next(
            (
                t - boundary_s
                for t, token, status in seen[oid]
                if t > boundary_s
                and ((status is not None and is_terminal(status)) or (token is not None and token not in old_tokens))
            ),
            None,
        )
    return result


def _first_terminal(seen: list[tuple[float, str | None, str | None]]) -> float | None:
    return next((t for t, _, status in seen if status is not None and is_terminal(status)), None)


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def terminate_db_sync(faults: FaultInjector, client: redis.Redis, index: int) -> Termination:
    """SIGTERM a db-sync replica at a moment it holds stream entries unacknowledged (a batch in hand)."""
    slot = faults.engine.replica("db-sync", index)
    prefix = f"{socket.gethostname()}-{slot.process.pid}-"  # its consumer name (StreamSyncer)

    def pending() -> int:
        summary = client.xpending(redis_keys.events_stream(0), redis_keys.DBSYNC_GROUP)
        return sum(c["pending"] for c in summary.get("consumers") or [] if _text(c["name"]).startswith(prefix))

    deadline = time.monotonic() + 5  # batches are short: if none is caught in hand, SIGTERM it anyway
    held = pending()
    while held == 0 and time.monotonic() < deadline:
        time.sleep(0.002)
        held = pending()
    result = _terminate(faults, "db-sync", index)
    result.held = held
    result.extra["leftPending"] = pending()
    return result


def _empty_postgres(db: sa.Engine) -> None:
    # The session's PostgreSQL still holds the orders of tests before this one, whose Redis side
    # `start_engine` flushed: the checker would call them lost.
    with db.begin() as conn:
        conn.execute(sa.delete(events_table))
        conn.execute(sa.delete(orders_table))


def run_schedule(faults: FaultInjector, client: redis.Redis) -> list[Termination]:
    engine: Engine = faults.engine
    done = [terminate_execution_worker(faults, client, 0, LONG_DRAIN_S), terminate_db_sync(faults, client, 0)]
    # The same replica back with a drain shorter than any swap: it must hand back, not finish.
    engine.replica("execution-worker", 0).env["WORKER_DRAIN_S"] = str(SHORT_DRAIN_S)
    engine.restart("execution-worker", 0)
    done.append(terminate_execution_worker(faults, client, 0, SHORT_DRAIN_S))
    for name in ("limit-worker", "sniper-worker"):
        done.append(_terminate(faults, name, 0))
        time.sleep(1)
    done.append(_terminate(faults, "api", 0))
    engine.restart("api", 0)  # the only API replica: a real scale-down keeps another one serving
    time.sleep(4)
    return done


def test_sigterm_scale_down_hands_back_or_finishes_every_order(fault_servers, tmp_path_factory):
    began = time.monotonic()
    log_dir = tmp_path_factory.mktemp("scale-down-logs")
    db = make_engine(fault_servers.database_url)
    _empty_postgres(db)
    engine = start_engine(
        fault_servers.redis_url, fault_servers.database_url, log_dir, epoch_in_s=10, replicas=REPLICAS, **ENGINE_ENV
    )
    client = redis.Redis.from_url(fault_servers.redis_url, socket_timeout=10)
    faults = FaultInjector(engine, fault_servers.redis, fault_servers.postgres, in_flight=executing(client))
    load = LoadDriver(engine.api_url, rate_per_s=10, give_up_after_s=30)
    terminated: list[Termination] = []
    try:
        load.start()
        time.sleep(6)
        load_began = time.monotonic()
        terminated = run_schedule(faults, client)
        load.stop()
        loaded_s = time.monotonic() - load_began
        verdict, drained_s = settle(client, db, set(load.accepted), SETTLE_TIMEOUT_S)
        stopped = {(t.service, 0) for t in terminated if t.service != "api"}
        dead = engine.dead_services(excluding=stopped)
    finally:
        engine.stop_all()
        client.close()
        db.dispose()
    data = report.build(
        load, verdict, faults.counts, dead_services=dead, load_and_sigterms=loaded_s, drain=drained_s,
        total=time.monotonic() - began,
    )  # fmt: skip
    data["terminations"] = [
        {"service": t.service, "exitS": round(t.exit_s, 3), "returncode": t.returncode, "held": t.held, **t.extra}
        for t in terminated
    ]
    data["ordersExecutingWhenFaultsHit"] = sum(faults.in_flight_at_faults)
    data["logs"] = str(log_dir)
    # Not report.save: that would replace the main fault run's report in the terminal summary.
    for path in (report.ROOT / "reports" / "scale-down.json", Path(log_dir) / "scale-down.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    lines = report.render(data) + [json.dumps(t) for t in data["terminations"]]
    print("\n".join(lines))
    if not verdict.ok or dead:
        print(engine.logs()[-12000:])
    assert load.accepted, "no order was accepted: the load never reached the API"
    assert not dead, f"services exited on their own: {dead}"
    assert verdict.ok, f"{verdict.counts()}: {data['violationExamples'][:10]}"
    for t in terminated:
        # uvicorn (>= 0.29) re-raises the signal it caught once its graceful shutdown is done: -15 is its 0.
        graceful = (0, -signal.SIGTERM) if t.service == "api" else (0,)
        assert t.returncode in graceful, f"{t.service} exited {t.returncode} on SIGTERM"
    long, dbsync, short = terminated[0], terminated[1], terminated[2]
    for t in (long, short):
        assert t.held and t.held >= 1, f"execution-worker held nothing when signalled: {t}"
        assert t.exit_s <= t.extra["drainS"] + SHUTDOWN_ALLOWANCE_S, t
        assert not t.extra["notPickedUp"], f"handed-back orders nobody took within {PICKUP_LIMIT_S} s: {t}"
    assert long.extra["handedBackPerLog"] == 0, f"a 10 s drain should finish 2-3 s swaps: {long}"
    assert short.extra["handedBackPerLog"] >= 1, f"a 0.5 s drain should hand back swaps in flight: {short}"
    assert short.extra["pickupS"] is not None and short.extra["pickupS"]["max"] <= PICKUP_LIMIT_S, short
    assert dbsync.extra["leftPending"] == 0, f"db-sync left entries unacknowledged on SIGTERM: {dbsync}"
