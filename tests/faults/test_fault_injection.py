"""Every service as two real processes (the API as one) under steady load, while everything gets killed.

The schedule: each service SIGKILLed and restarted three or four times (one replica, then every replica
at once), Redis SIGKILLed and restarted on its AOF three times, Redis frozen (SIGSTOP) for 10 s, PostgreSQL
down for 30 s while services and Redis keep dying. Then the load stops, the engine drains, and
`invariants.check` must find every accepted order terminal or legitimately resting, executed at most once,
with a gapless legal event log that PostgreSQL holds exactly as Redis does. The numbers go to the terminal
and to reports/faults.json.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from shared.persistence.batch import make_engine
from tests.faults import report
from tests.faults.injector import FaultInjector
from tests.faults.invariants import executing, settle
from tests.faults.load import LoadDriver
from tests.support.processes import ALL_SERVICES, start_engine

#: Fast enough that orders are in flight when faults hit, and that recovery happens within the run.
ENGINE_ENV = {
    "SIM_SEED": "faults",
    "SIM_LATENCY_SCALE": "0.25",  # a swap ~0.6 s, a quote ~50 ms: orders are in flight when faults hit
    "SIM_FAILURE_RATE": "0.02",
    "SIM_DAILY_VOLATILITY": "0.5",  # prices move enough in a minute for resting limit orders to trigger
    "SIM_LAUNCH_FIRST_S": "5",
    "SIM_LAUNCH_INTERVAL_S": "40",  # WIF, POPCAT, MEW, PNUT launch during the run
    "SIM_LIQUIDITY_STEP_S": "3",
    # One transaction in ten is dropped and known dead 4 s later (10 slots): resends happen while workers die,
    # and the checker finds any second transaction that reached landing (`nonce_used`).
    "SIM_DROP_RATE": "0.1",
    "SIM_BLOCKHASH_VALID_SLOTS": "10",
    "QUOTE_INTERVAL_MS": "250",
    "RETRY_MIN_BACKOFF_MS": "300",
    "RETRY_MAX_BACKOFF_MS": "3000",
    "WORKER_HEARTBEAT_TIMEOUT_MS": "3000",  # a dead execution worker's messages come back after 3 s
    "WORKER_MAINTENANCE_CHANCE": "100000",  # ...at the next sweep: 10 % of fetches run one
    "ORDER_LEASE_MS": "3000",
    "PYTHONUNBUFFERED": "1",
}
REPLICAS = {name: 2 for name in ALL_SERVICES if name != "api"}
WORKERS = [name for name in ALL_SERVICES if name != "api"]
DRAIN_TIMEOUT_S = 150
POSTGRES_DOWN_S = 30


def run_schedule(faults: FaultInjector) -> None:
    # Round 1: each service once (first replica), then Redis crashes and comes back from its AOF.
    for name in ALL_SERVICES:
        faults.kill_service(name, (0,))
        time.sleep(2)
    faults.restart_redis()
    time.sleep(6)
    # Round 2: each service again (second replica; both execution workers together), then Redis freezes.
    for name in ALL_SERVICES:
        faults.kill_service(name, (0, 1) if name == "execution-worker" else (0,) if name == "api" else (1,))
        time.sleep(2)
    faults.freeze_redis(10)
    time.sleep(6)
    # Round 3: PostgreSQL down for 30 s; meanwhile every service loses all its replicas at once, and
    # Redis crashes once more half-way through.
    faults.stop_postgres()
    down_since = time.monotonic()
    for name in ALL_SERVICES:
        faults.kill_service(name, tuple(range(REPLICAS.get(name, 1))))
        time.sleep(2)
        if name == "db-sync":
            faults.restart_redis()
    time.sleep(max(0.0, POSTGRES_DOWN_S - (time.monotonic() - down_since)))
    faults.start_postgres()
    time.sleep(6)
    # Round 4: what PostgreSQL's return has to catch up with is interrupted too.
    faults.kill_service("db-sync", (0, 1))
    faults.restart_redis()
    time.sleep(5)


def test_every_accepted_order_survives_crashes_of_every_service_and_both_servers(fault_servers, tmp_path_factory):
    began = time.monotonic()
    log_dir = tmp_path_factory.mktemp("fault-engine-logs")
    engine = start_engine(
        fault_servers.redis_url,
        fault_servers.database_url,
        log_dir,
        epoch_in_s=10,
        replicas=REPLICAS,
        **ENGINE_ENV,
    )
    redis_client = redis.Redis.from_url(fault_servers.redis_url, socket_timeout=10)
    db = make_engine(fault_servers.database_url)
    probe = redis.Redis.from_url(fault_servers.redis_url, socket_timeout=1, socket_connect_timeout=1)
    faults = FaultInjector(engine, fault_servers.redis, fault_servers.postgres, in_flight=executing(probe))
    load = LoadDriver(engine.api_url, rate_per_s=8, give_up_after_s=30)
    try:
        load.start()
        time.sleep(8)
        load_began = time.monotonic()
        run_schedule(faults)
        load.stop()
        faulted_s = time.monotonic() - load_began
        verdict, drained_s = settle(redis_client, db, set(load.accepted), DRAIN_TIMEOUT_S)
        dead = faults.dead_services()
    finally:
        engine.stop_all()
        redis_client.close()
        probe.close()
        db.dispose()
    data = report.build(
        load, verdict, faults.counts, dead_services=dead, faults_and_load=faulted_s, drain=drained_s,
        total=time.monotonic() - began,
    )  # fmt: skip
    data["timeline"] = faults.timeline
    data["ordersExecutingWhenFaultsHit"] = sum(faults.in_flight_at_faults)
    data["logs"] = str(log_dir)
    report.save(data, report.ROOT / "reports" / "faults.json", Path(log_dir) / "faults.json")
    print("\n".join(report.render(data)))
    if not verdict.ok or dead:
        print(engine.logs()[-12000:])
    assert load.accepted, "no order was accepted: the load never reached the API"
    assert {"stop", "trailing_stop", "oco"} <= set(load.accepted_by_type()), load.accepted_by_type()
    assert not dead, f"services exited on their own: {dead}"
    assert verdict.ok, f"{verdict.counts()}: {data['violationExamples'][:10]}"
