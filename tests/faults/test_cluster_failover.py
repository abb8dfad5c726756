"""A Redis Cluster loses a primary to `kill -9` under load, and no accepted order is lost, executed twice or
left with a gap in its history.

Real servers on loopback, started here (tests/support/redis_cluster.py): three primaries with a replica each.
Every service runs as a real process with `REDIS_CLUSTER=true` and PARTITIONS over the three shards (two
execution workers), and the fault suite's LoadDriver sends market, limit, sniper and conditional orders at
~10/s. The schedule:

1. Steady load, so every kind of order is in flight and resting on every shard before the fault.
2. `kill -9` with the replica behind: the victim's replica is frozen (SIGSTOP) for half a second while orders
   keep arriving, so the primary takes writes its replica does not have; then the primary is SIGKILLed and
   the replica thawed. The cluster promotes it, and it never saw those writes: an order whose acceptance did
   not wait for the replica would be lost here for certain. The victim is the primary of partition 0's slot.
3. The killed node comes back (as the new primary's replica), under load.
4. The load stops, and `invariants.settle` (through a cluster client, and this test's own PostgreSQL
   database) must find 0 lost, 0 duplicated, 0 stuck, 0 gaps and PostgreSQL in agreement, with enough orders
   accepted in each phase that this says something.

The unavailability window is measured as in test_failover.py and printed, with reports/cluster-failover.json.
"""

from __future__ import annotations

import signal
import time

import pytest
from redis.cluster import RedisCluster

from shared.domain.partitions import tag
from shared.persistence.batch import make_engine
from shared.persistence.migrate import upgrade
from shared.redis_cluster import partition_slot_ranges
from tests.faults import report
from tests.faults.failovers import Fault, accepted_in, conclude, now_text, unavailability
from tests.faults.invariants import settle
from tests.faults.load import LoadDriver
from tests.faults.test_fault_injection import ENGINE_ENV as FAULT_ENGINE_ENV
from tests.support.databases import create_scratch_database, drop_database
from tests.support.processes import start_engine
from tests.support.redis_cluster import CLUSTER_SERVER, RedisClusterNodes, cluster_server_usable, redis_cluster

pytestmark = pytest.mark.skipif(not cluster_server_usable(), reason=f"needs Redis 7 at {CLUSTER_SERVER}")

ENGINE_ENV = {
    **FAULT_ENGINE_ENV,
    "SIM_SEED": "cluster-failover",
    "SIM_LAUNCH_INTERVAL_S": "20",  # launches within the run, so sniper orders fire across the fault
}
#: Two execution workers, so one's executions and the other's crash recovery both meet the failover.
REPLICAS = {"execution-worker": 2}
#: Partitions over three shards: two on each primary.
PARTITIONS = 6
RATE_PER_S = 10
STEADY_S = 6.0
#: How long the replica stays frozen while its primary takes writes: well under the node timeout (1 s).
REPLICA_FROZEN_S = 0.5
AFTER_FAULT_S = 5.0
SETTLE_TIMEOUT_S = 60


def _offset(cluster: RedisClusterNodes, node) -> int:
    return int(cluster.client(node).info("replication")["master_repl_offset"])


def kill_with_replica_behind(cluster: RedisClusterNodes) -> tuple[Fault, object]:
    victim = cluster.primary_for_key(tag(0))
    (replica,) = cluster.replicas_of(victim)
    wall = now_text()
    offset_frozen = _offset(cluster, victim)
    frozen_at = time.monotonic()
    replica.process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(REPLICA_FROZEN_S)
        offset_killed = _offset(cluster, victim)
        cluster.kill(victim)
        killed_at = time.monotonic()
    finally:
        replica.process.send_signal(signal.SIGCONT)
    heir = cluster.wait_for_promotion(victim)
    promoted_at = time.monotonic()
    assert offset_killed > offset_frozen, "the primary took no write while its replica was frozen"
    fault = Fault(
        "kill -9 of a primary with its replica behind",
        frozen_at,
        0.0,
        {
            "killedPort": victim.port,
            "promotedPort": heir.port,
            "replicaFrozenS": round(killed_at - frozen_at, 3),
            "bytesOnlyTheKilledPrimaryHad": offset_killed - offset_frozen,
            "promotedAfterKillS": round(promoted_at - killed_at, 3),
            "atUtc": wall,
        },
    )
    return fault, victim


def test_accepted_orders_survive_a_primary_killed_in_a_redis_cluster(fault_servers, tmp_path_factory):
    began = time.monotonic()
    log_dir = tmp_path_factory.mktemp("cluster-failover-logs")
    database_url = create_scratch_database(fault_servers.database_url, "cluster_failover")
    upgrade(database_url)
    db = make_engine(database_url)
    engine = load = client = None
    try:
        ranges = partition_slot_ranges(PARTITIONS, 3)  # two partitions on each primary
        with redis_cluster(tmp_path_factory.mktemp("cluster"), slot_ranges=ranges) as cluster:
            env = {**ENGINE_ENV, "REDIS_CLUSTER": "true", "PARTITIONS": str(PARTITIONS)}
            engine = start_engine(cluster.url, database_url, log_dir, epoch_in_s=10, replicas=REPLICAS, **env)
            load = LoadDriver(engine.api_url, rate_per_s=RATE_PER_S, give_up_after_s=30)
            load.start()
            load_began = time.monotonic()
            time.sleep(STEADY_S)

            killed, victim = kill_with_replica_behind(cluster)
            time.sleep(AFTER_FAULT_S)
            cluster.restart(victim)
            rejoined_at = time.monotonic()
            time.sleep(AFTER_FAULT_S)
            load_stopped = time.monotonic()
            load.stop()
            killed.until = load_stopped

            client = RedisCluster.from_url(cluster.url, socket_timeout=10)
            verdict, drained_s = settle(client, db, set(load.accepted), SETTLE_TIMEOUT_S)
            dead = engine.dead_services()
            engine.stop_all()  # while the cluster is still up, so no service logs the servers' going away
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
        "kill -9": accepted_in(load, killed.at, rejoined_at),
        "rejoined": accepted_in(load, rejoined_at, load_stopped),
    }
    lost = {v.order_id for v in verdict.violations if v.kind == "lost"}
    data = report.build(
        load, verdict, {killed.name: 1}, dead_services=dead, load_and_failovers=load_stopped - load_began,
        drain=drained_s, total=time.monotonic() - began,
    )  # fmt: skip
    data["acceptedByPhase"] = {name: len(ids) for name, ids in phases.items()}
    data["lostByPhase"] = {name: len(ids & lost) for name, ids in phases.items()}
    data["unavailability"] = {killed.name: unavailability(load.submissions, killed)}
    extra = [f"accepted by phase {data['acceptedByPhase']}, lost by phase {data['lostByPhase']}"]
    conclude("cluster-failover", data, verdict, dead, log_dir, engine, phases, extra)
