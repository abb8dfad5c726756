"""The Redis Cluster fixture (tests/support/redis_cluster.py) is what it says: a cluster client reaches every
primary through one URL, a killed primary's replica takes over and the same client object carries on once it
has retried through the failover, the killed node comes back as the new primary's replica, and a Lua script
may touch several keys only when they share a slot, which hash tags give. How long the client needed and what
it raised meanwhile is printed (`-s` shows it): the engine's clients will meet the same."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    ClusterError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.support.redis_cluster import CLUSTER_SERVER, RedisClusterNodes, cluster_server_usable, redis_cluster
from tests.support.sentinel import DATA_PASSWORD, Node, wait_until

pytestmark = pytest.mark.skipif(not cluster_server_usable(), reason=f"needs Redis 7 at {CLUSTER_SERVER}")

#: What a cluster client may raise while a failover is under way, after its own retries ran out:
#: ClusterError covers CLUSTERDOWN (ClusterDownError, MasterDownError) and its "TTL exhausted" after too many
#: redirections; AskError covers MovedError.
FAILOVER_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,
    TryAgainError,
    AskError,
    SlotNotCoveredError,
)
#: Longest the client may take to work again after `kill -9` of a primary: the failover itself takes 2-3 s.
WINDOW_DEADLINE_S = 20.0
POLL_S = 0.05

#: Writes one key and increments the other, in one step: both must be this node's, in one slot.
TWO_KEYS_SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


def key_on(cluster: RedisClusterNodes, primary: Node, name: str) -> str:
    """A key whose hash tag puts it (and every key with the same tag) on `primary`."""
    for index in range(10_000):
        key = f"{{{name}-{index}}}:state"
        if cluster.primary_for_key(key) is primary:
            return key
    raise AssertionError(f"no hash tag of {name} lands on {primary.name}")


async def test_a_cluster_client_writes_and_reads_on_every_primary(cluster):
    primaries = cluster.primaries()
    assert len(primaries) == 3 and len(cluster.nodes) == 6
    for primary in primaries:
        assert len(cluster.replicas_of(primary)) == 1
    client = RedisCluster.from_url(cluster.url)
    try:
        for primary in primaries:
            key = key_on(cluster, primary, "order")
            sibling = key.replace(":state", ":events")
            assert cluster.primary_for_key(sibling) is primary, "keys with the same hash tag share a primary"
            await client.set(key, primary.name)
            await client.rpush(sibling, "pending")
            assert await client.get(key) == primary.name.encode()
            assert await client.lrange(sibling, 0, -1) == [b"pending"]
            # The key is on that node itself, not merely reachable through redirections.
            assert cluster.client(primary).get(key) == primary.name
        info = await client.cluster_info()
        assert info["cluster_state"] == "ok" and int(info["cluster_slots_assigned"]) == 16384
        for node in cluster.nodes:
            assert cluster.cluster_info(node)["cluster_state"] == "ok"
    finally:
        await client.aclose()


async def test_a_script_may_touch_two_keys_only_in_one_slot(cluster):
    primary = cluster.primaries()[0]
    state = key_on(cluster, primary, "lua")
    counter = state.replace(":state", ":seq")
    client = RedisCluster.from_url(cluster.url)
    try:
        assert await client.eval(TWO_KEYS_SCRIPT, 2, state, counter, "filled") == 1
        assert await client.eval(TWO_KEYS_SCRIPT, 2, state, counter, "filled") == 2
        assert await client.get(state) == b"filled"

        apart = next(f"lua-apart-{i}" for i in range(100) if key_slot(f"lua-apart-{i}".encode()) != key_slot(b"lua"))
        # The cluster client refuses before sending anything ...
        with pytest.raises(RedisClusterException, match="same key slot"):
            await client.eval(TWO_KEYS_SCRIPT, 2, "lua", apart, "x")
        # ... and a node asked directly refuses too: CROSSSLOT, even when it serves both slots.
        owner = cluster.primary_for_key("lua")
        local = next(
            f"lua-local-{i}"
            for i in range(10_000)
            if key_slot(f"lua-local-{i}".encode()) != key_slot(b"lua")
            and cluster.primary_for_key(f"lua-local-{i}") is owner
        )
        with pytest.raises(ClusterCrossSlotError, match="same slot"):
            cluster.client(owner).eval(TWO_KEYS_SCRIPT, 2, "lua", local, "x")
        # Keys a script does not declare are checked only for being this node's (Redis 7.0 lets one of another
        # slot on the same node through; 7.2 refuses it): a script must declare every key it touches. And what
        # it wrote before the refused call stays written: Redis does not roll a failed script back.
        far = next(f"lua-far-{i}" for i in range(10_000) if cluster.primary_for_key(f"lua-far-{i}") is not owner)
        sneaky = "redis.call('SET', KEYS[1], 'half'); return redis.call('SET', ARGV[1], 'done')"
        with pytest.raises(ResponseError, match="non local key"):
            cluster.client(owner).eval(sneaky, 1, "lua", far)
        assert cluster.client(owner).get("lua") == "half" and await client.exists(far) == 0
    finally:
        await client.aclose()


async def test_a_killed_primary_is_replaced_and_the_same_client_carries_on(tmp_path):
    with redis_cluster(tmp_path, password=DATA_PASSWORD) as cluster:
        # The primary killed is the node of the client's URL: the client must find the cluster without it.
        old = cluster.nodes[0]
        assert cluster.url.endswith(f":{old.port}") and old in cluster.primaries()
        heirs = cluster.replicas_of(old)
        key = key_on(cluster, old, "order")
        elsewhere = key_on(cluster, cluster.primaries()[1], "order")
        client = RedisCluster.from_url(cluster.url)
        try:
            await client.set(key, "before")
            await client.set(elsewhere, "before")
            # On the replica too, so the promoted one holds it.
            wait_until("the replica to hold every write", lambda: cluster.replicas_caught_up(old))

            started = time.monotonic()
            cluster.kill(old)
            raised: Counter[str] = Counter()
            seen = None
            while True:
                try:
                    seen = await client.get(key)
                    await client.set(key, "after")
                    break
                except FAILOVER_ERRORS as exc:
                    raised[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
                if time.monotonic() - started > WINDOW_DEADLINE_S:
                    raise AssertionError(f"the client did not recover: {dict(raised)}\n{cluster.logs()}")
                await asyncio.sleep(POLL_S)
            window = time.monotonic() - started
            new = cluster.wait_for_promotion(old)
            promoted_after = time.monotonic() - started
            print(
                f"\nCLUSTER FAILOVER: client back after {window:.2f} s, promotion agreed after {promoted_after:.2f} s,"
                f" the client raised {dict(raised) or 'nothing'}"
            )

            assert new in heirs and cluster.primary_for_key(key) is new
            assert seen == b"before", "the acknowledged write survived the failover"
            assert await client.get(key) == b"after" and await client.get(elsewhere) == b"before"
            assert window < WINDOW_DEADLINE_S

            cluster.restart(old)
            assert cluster.replicas_of(new) == [old], "the old primary is back as the new one's replica"
            replication = cluster.client(old).info("replication")
            assert replication["role"] == "slave" and replication["master_port"] == new.port
            assert cluster.client(old).dbsize() == cluster.client(new).dbsize(), "and it resynced"
            assert await client.get(key) == b"after", "the same client still works"
        finally:
            await client.aclose()
