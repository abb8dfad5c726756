"""A Sentinel-managed Redis fails over under load, and no accepted order is lost, executed twice or left with
a gap in its history.

Real servers on loopback, started here (tests/support/sentinel.py): a primary, two replicas, three sentinels.
Every service runs as a real process (two execution workers) that finds the master through the sentinels,
and the fault suite's LoadDriver sends market, limit and sniper orders at ~10/s. Redis replication is
asynchronous: a master answers a write before its replicas have it, so an order answered 200 can vanish
with the master that took it. The engine has to make acceptance survive that. The schedule:

1. Steady load, so every kind of order is in flight and resting before the first fault.
2. `kill -9` with the replicas behind: both replicas are frozen (SIGSTOP) for half a second while orders
   keep arriving, so the master takes writes that no replica has; then the master is SIGKILLed and the
   replicas thawed. The sentinels promote one of them, which never saw those writes: an order whose
   acceptance did not wait for the replicas is lost here for certain (freezing them makes the loss certain
   instead of a race against replication's usual millisecond lag).
3. The killed node comes back as a replica (as an operator would bring it back), under load, and the
   sentinels' lockout after an election is waited out, so the next failover is not held back by it.
4. `SENTINEL FAILOVER` under load: the old master stays up and takes writes until the sentinels demote
   it (up to their 10 s INFO period), and whatever it took meanwhile is dropped when it resyncs from the
   new master. A client that keeps writing to it must not count those writes as done.
5. The load stops, and `invariants.settle` (on the final master and this test's own PostgreSQL database)
   must find 0 lost, 0 duplicated, 0 stuck, 0 gaps and PostgreSQL in agreement, with enough orders
   accepted in each phase that this says something.

For each fault the unavailability window is measured as the client saw it: the longest stretch with no
submission answered 200, and the slowest submission (first try to final answer). Both go to the terminal
and to reports/failover.json; the bound asserted on them is generous (they are figures, not targets).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.persistence.batch import make_engine
from shared.persistence.migrate import upgrade
from tests.faults import report
from tests.faults.failovers import Fault, accepted_in, conclude, now_text, unavailability
from tests.faults.invariants import settle
from tests.faults.load import LoadDriver
from tests.faults.test_fault_injection import ENGINE_ENV as FAULT_ENGINE_ENV
from tests.support.databases import create_scratch_database, drop_database
from tests.support.processes import start_engine
from tests.support.sentinel import DATA_PASSWORD, REDIS_SERVER, SentinelCluster, sentinel_cluster, wait_until

pytestmark = pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="needs redis-server")

ENGINE_ENV = {
    **FAULT_ENGINE_ENV,
    "SIM_SEED": "failover",
    "SIM_LAUNCH_INTERVAL_S": "20",  # two launches within the run, so sniper orders fire across the faults
}
#: Two execution workers, so one's executions and the other's crash recovery both meet the failovers.
REPLICAS = {"execution-worker": 2}
RATE_PER_S = 10
STEADY_S = 5.0
#: How long the replicas stay frozen while the master takes writes: a few orders' worth at RATE_PER_S,
#: and well under the sentinels' down-after (1 s), so they still count the replicas healthy when it dies.
REPLICAS_FROZEN_S = 0.5
AFTER_FAULT_S = 4.0
SETTLE_TIMEOUT_S = 45


def _repl_offset(node) -> int:
    return int(node.client(DATA_PASSWORD).info("replication")["master_repl_offset"])


def kill_with_replicas_behind(cluster: SentinelCluster) -> Fault:
    old = cluster.master()
    wall = now_text()
    offset_frozen = _repl_offset(old)
    frozen_at = time.monotonic()
    with cluster.replicas_frozen() as replicas:
        assert len(replicas) == 2, replicas
        time.sleep(REPLICAS_FROZEN_S)
        offset_killed = _repl_offset(old)
        old.kill()
        killed_at = time.monotonic()
    new_port = cluster.promoted_other_than(old.port)
    promoted_at = time.monotonic()
    cluster.elected()
    # The fault is real only if the master took writes its replicas never got (the quote stream alone
    # writes several times a second; the orders' writes are on top of that).
    assert offset_killed > offset_frozen, "the master took no write while its replicas were frozen"
    return Fault(
        "kill -9 with replicas behind",
        frozen_at,
        0.0,
        {
            "oldMasterPort": old.port,
            "newMasterPort": new_port,
            "replicasFrozenS": round(killed_at - frozen_at, 3),
            "bytesOnlyTheKilledMasterHad": offset_killed - offset_frozen,
            "promotedAfterKillS": round(promoted_at - killed_at, 3),
            "atUtc": wall,
            "killedAt": killed_at,
            "_node": old,
        },
    )


def manual_failover(cluster: SentinelCluster) -> Fault:
    old = cluster.master()
    wall = now_text()
    failover_at = time.monotonic()
    cluster.manual_failover()
    new_port = cluster.promoted_other_than(old.port)
    promoted_at = time.monotonic()
    # Until the sentinels demote it, the old master still accepts writes from whoever is connected to it.
    wait_until(
        "the old master to be demoted",
        lambda: old.client(DATA_PASSWORD).role()[0] in (b"slave", "slave"),
    )
    demoted_at = time.monotonic()
    return Fault(
        "SENTINEL FAILOVER",
        failover_at,
        0.0,
        {
            "oldMasterPort": old.port,
            "newMasterPort": new_port,
            "promotedAfterS": round(promoted_at - failover_at, 3),
            "oldMasterDemotedAfterS": round(demoted_at - failover_at, 3),
            "atUtc": wall,
        },
    )


def test_accepted_orders_survive_a_sentinel_failover(fault_servers, tmp_path_factory):
    began = time.monotonic()
    log_dir = tmp_path_factory.mktemp("failover-logs")
    # A database of its own on the suite's PostgreSQL: the checker reads every order it holds, and the
    # other fault tests' orders are in no Redis here.
    database_url = create_scratch_database(fault_servers.database_url, "failover")
    upgrade(database_url)
    db = make_engine(database_url)
    faults: list[Fault] = []
    engine = None
    load: LoadDriver | None = None
    client = None
    try:
        with sentinel_cluster(tmp_path_factory.mktemp("sentinel")) as cluster:
            sentinel_env = {name.upper(): value for name, value in cluster.settings_env().items()}
            primary = cluster.master()
            engine = start_engine(
                # start_engine empties (and sets the epoch on) this server; the services get the sentinels.
                f"redis://:{DATA_PASSWORD}@127.0.0.1:{primary.port}/0",
                database_url,
                log_dir,
                epoch_in_s=10,
                replicas=REPLICAS,
                **{**ENGINE_ENV, **sentinel_env},
            )
            load = LoadDriver(engine.api_url, rate_per_s=RATE_PER_S, give_up_after_s=30)
            load.start()
            load_began = time.monotonic()
            time.sleep(STEADY_S)

            killed = kill_with_replicas_behind(cluster)
            faults.append(killed)
            time.sleep(AFTER_FAULT_S)
            cluster.restart_as_replica(killed.notes.pop("_node"))
            killed_at = killed.notes.pop("killedAt")
            time.sleep(AFTER_FAULT_S)
            cluster.wait_out_the_failover_lockout()

            switched = manual_failover(cluster)
            faults.append(switched)
            killed.until = switched.at
            time.sleep(AFTER_FAULT_S)
            load_stopped = time.monotonic()
            load.stop()
            switched.until = load_stopped
            loaded_s = load_stopped - load_began

            client = cluster.master().client(DATA_PASSWORD, socket_timeout=10)
            verdict, drained_s = settle(client, db, set(load.accepted), SETTLE_TIMEOUT_S)
            dead = engine.dead_services()
            # Stopped while the cluster is still up, so that no service logs the servers' going away.
            engine.stop_all()
    finally:
        if load is not None:
            load.stop(timeout=5)
        if engine is not None:
            engine.stop_all()
        if client is not None:
            client.close()
        db.dispose()
        drop_database(database_url)

    phases = {
        "steady": accepted_in(load, load_began, killed.at),
        "kill -9 and rejoin": accepted_in(load, killed.at, switched.at),
        "SENTINEL FAILOVER": accepted_in(load, switched.at, load_stopped),
    }
    # Answered 200 between the freeze and the kill: on a master whose replicas had none of it.
    answered_while_frozen = {
        s.order_id
        for s in load.submissions
        if s.outcome == "accepted" and s.answered_at is not None and killed.at <= s.answered_at <= killed_at
    }
    lost = {v.order_id for v in verdict.violations if v.kind == "lost"}
    data = report.build(
        load, verdict, {f.name: 1 for f in faults}, dead_services=dead, load_and_failovers=loaded_s,
        drain=drained_s, total=time.monotonic() - began,
    )  # fmt: skip
    data["acceptedByPhase"] = {name: len(ids) for name, ids in phases.items()}
    data["lostByPhase"] = {name: len(ids & lost) for name, ids in phases.items()}
    data["answered200WhileReplicasFrozen"] = len(answered_while_frozen)
    data["lostOfThose"] = len(answered_while_frozen & lost)
    # Lost after a 200, or never answered 200 and yet in PostgreSQL (db-sync wrote what the failover then
    # took back from Redis: history showing an order that does not exist).
    data["lostAcknowledged"] = len(lost & set(load.accepted))
    data["lostInPostgresOnly"] = len(lost - set(load.accepted))
    data["unavailability"] = {fault.name: unavailability(load.submissions, fault) for fault in faults}
    extra = [
        f"accepted by phase {data['acceptedByPhase']}, lost by phase {data['lostByPhase']}; "
        f"answered 200 while the replicas were frozen: {data['answered200WhileReplicasFrozen']}, "
        f"of which lost {data['lostOfThose']}; lost after a 200: {data['lostAcknowledged']}, "
        f"never answered 200 but in PostgreSQL: {data['lostInPostgresOnly']}",
    ]
    conclude("failover", data, verdict, dead, log_dir, engine, phases, extra)
