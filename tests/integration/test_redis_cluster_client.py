"""The engine's clients on a real Redis Cluster (tests/support/redis_cluster.py): the asyncio router
(shared/redis_cluster.py) and the blocking slot-bound client (shared/redis_slot_client.py) send each command to
its slot's primary, load scripts where they run, split pipelines by primary, keep WATCH transactions on one,
wait for each primary's own replicas, follow MOVED, and ride out a primary killed with `kill -9`."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError

from shared.redis_client import REDIS_UNAVAILABLE, redis_client, sync_redis_client
from shared.redis_cluster import ClusterRedis
from shared.settings import Settings
from tests.support.redis_cluster import CLUSTER_SERVER, RedisClusterNodes, cluster_server_usable, redis_cluster
from tests.support.sentinel import Node

pytestmark = pytest.mark.skipif(not cluster_server_usable(), reason=f"needs Redis 7 at {CLUSTER_SERVER}")

TWO_KEYS_SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])"
#: Longest a command may keep failing after `kill -9` of a primary: the failover itself takes 2-3 s.
RIDE_OUT_S = 20.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def settings(cluster) -> Settings:
    return Settings(redis_url=cluster.url, redis_cluster=True)


def tag_on(cluster: RedisClusterNodes, primary: Node, name: str) -> str:
    """A hash tag whose keys land on `primary`."""
    for index in range(10_000):
        tag = f"{{{name}-{index}}}"
        if cluster.primary_for_key(tag) is primary:
            return tag
    raise AssertionError(f"no hash tag of {name} lands on {primary.name}")


def replica_get(node: Node, key: str) -> bytes | None:
    """Read `key` on a replica (READONLY on the connection that reads)."""
    client = redis.Redis(port=node.port, single_connection_client=True)
    try:
        client.execute_command("READONLY")
        return client.get(key)
    finally:
        client.close()


async def test_each_command_goes_to_its_slot_s_primary_and_writes_wait_for_its_replica(cluster, settings):
    client = redis_client(settings, auto_pipeline=True)
    try:
        assert isinstance(client, ClusterRedis)
        for primary in cluster.primaries():
            tag = tag_on(cluster, primary, "order")
            # Issued in one turn: each primary's commands share one pipeline (and its one WAIT).
            await asyncio.gather(*(client.set(f"{tag}:{i}", primary.name) for i in range(20)))
            assert cluster.client(primary).get(f"{tag}:7") == primary.name  # (the fixture's clients decode)
            (replica,) = cluster.replicas_of(primary)
            assert replica_get(replica, f"{tag}:19") == primary.name.encode(), "acknowledged: on the replica"
            node = client.node(("127.0.0.1", primary.port))
            assert node.replica_count is not None and await node.replica_count.required() == 1
    finally:
        await client.aclose()


async def test_scripts_load_where_they_run_and_may_touch_one_slot(cluster, settings):
    client = redis_client(settings)
    script = client.register_script(TWO_KEYS_SCRIPT)
    try:
        for primary in cluster.primaries():
            tag = tag_on(cluster, primary, "script")
            assert await script(keys=[f"{tag}:a", f"{tag}:n"], args=["x"]) == 1
            assert await script(keys=[f"{tag}:a", f"{tag}:n"], args=["y"]) == 2
        first, second = cluster.primaries()[:2]
        keys = [f"{tag_on(cluster, first, 'x')}:a", f"{tag_on(cluster, second, 'x')}:n"]
        with pytest.raises(ClusterCrossSlotError):
            await script(keys=keys, args=["z"])  # refused here, as the cluster would refuse it
        assert not cluster.client(first).exists(keys[0])
    finally:
        await client.aclose()


async def test_a_pipeline_spans_primaries_and_a_watched_transaction_stays_on_one(cluster, settings):
    client = redis_client(settings)
    tags = [tag_on(cluster, primary, "pipe") for primary in cluster.primaries()]
    try:
        async with client.pipeline(transaction=False) as pipe:
            for i, tag in enumerate(tags):
                pipe.set(f"{tag}:k", i)
                pipe.incr(f"{tag}:n")
                pipe.get(f"{tag}:k")
            assert await pipe.execute() == [True, 1, b"0", True, 1, b"1", True, 1, b"2"]

        tag = tags[0]
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch(f"{tag}:k", f"{tag}:n")
            current = int(await pipe.get(f"{tag}:n"))
            pipe.multi()
            pipe.set(f"{tag}:n", current + 10)
            pipe.get(f"{tag}:k")
            assert await pipe.execute() == [True, b"0"]
        assert await client.get(f"{tag}:n") == b"11"

        async with client.pipeline(transaction=True) as pipe:
            pipe.set(f"{tags[0]}:k", "a")
            pipe.set(f"{tags[1]}:k", "b")
            with pytest.raises(ClusterCrossSlotError):
                await pipe.execute()
    finally:
        await client.aclose()


async def test_a_stale_map_follows_moved_to_the_slot_s_primary(cluster, settings):
    client = redis_client(settings)
    first, second = cluster.primaries()[:2]
    tag = tag_on(cluster, first, "moved")
    try:
        await client.set(f"{tag}:k", "before")
        assert isinstance(client, ClusterRedis)
        client._slots[key_slot(tag.encode())] = ("127.0.0.1", second.port)  # as if the slot had moved
        assert await client.get(f"{tag}:k") == b"before"  # MOVED from `second`, then served by `first`
        assert client._slots[key_slot(tag.encode())] == ("127.0.0.1", first.port)
    finally:
        await client.aclose()


async def ride_out(attempt, deadline_s: float = RIDE_OUT_S) -> tuple[object, int]:
    """`attempt()` until it succeeds, as the engine's ride-out loops do; its result and how many failures."""
    failures, deadline = 0, time.monotonic() + deadline_s
    while True:
        try:
            return await attempt(), failures
        except REDIS_UNAVAILABLE:
            failures += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_both_clients_ride_out_a_primary_killed_with_kill_9(cluster, settings):
    client = redis_client(settings, auto_pipeline=True)
    victim = cluster.primaries()[0]
    tag = tag_on(cluster, victim, "failover")
    blocking = sync_redis_client(settings, slot_of=f"{tag}:blocking")
    try:
        await client.set(f"{tag}:k", "before")
        blocking.set(f"{tag}:blocking", "before")
        cluster.kill(victim)
        started = time.monotonic()
        (_, failures) = await ride_out(lambda: client.set(f"{tag}:k", "after"))
        print(f"asyncio client: {failures} failures over {time.monotonic() - started:.1f} s")
        heir = cluster.wait_for_promotion(victim)
        assert cluster.client(heir).get(f"{tag}:k") == "after"
        assert cluster.client(heir).get(f"{tag}:blocking") == "before", "acknowledged before the kill: kept"

        async def blocking_set() -> object:
            return await asyncio.to_thread(blocking.set, f"{tag}:blocking", "after")

        await ride_out(blocking_set)
        assert cluster.client(heir).get(f"{tag}:blocking") == "after"
    finally:
        blocking.close()
        await client.aclose()
        cluster.restart(victim)  # back as the heir's replica, for whatever runs next


async def test_a_cluster_of_one_primary_that_met_no_other_node_is_reached_too(tmp_path):
    # Such a node does not know its own address: CLUSTER SLOTS names its host as "" (the one asked).
    with redis_cluster(tmp_path, primaries=1, replicas_per_primary=0) as alone:
        settings = Settings(redis_url=alone.url, redis_cluster=True)
        client = redis_client(settings)
        blocking = sync_redis_client(settings, slot_of="{p0}:k")
        try:
            await client.set("{p0}:k", "routed")
            assert blocking.get("{p0}:k") == b"routed"
        finally:
            blocking.close()
            await client.aclose()
