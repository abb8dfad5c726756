"""How many replicas a write waits for, and what counts as a write: no server needed."""

from __future__ import annotations

import pytest

from shared.redis_replicas import (
    READ_ONLY_COMMANDS,
    NoCount,
    NotReplicated,
    ReplicaCount,
    ReplicasSeen,
    replicas_in_sync,
    replicas_to_wait_for,
    writes,
)
from shared.settings import Settings

MASTER = ("127.0.0.1", 6380)


def _replica(name: str = "127.0.0.1:6381", **fields: object) -> dict[str, object]:
    in_sync = {"role-reported": "slave", "master-link-status": "ok", "master-host": "127.0.0.1", "master-port": 6380}
    return {"name": name, "is_sdown": False, "is_odown": False, **in_sync, **fields}


def test_only_replicas_replicating_the_named_master_now_count():
    replicas = [
        _replica(),
        _replica(is_sdown=True),  # the killed old master, listed as a replica of the new one
        _replica(**{"role-reported": "master", "master-port": 0}),  # a replaced master, not demoted yet
        _replica(**{"master-port": 6379}),  # still replicating the replaced master (not reconfigured yet)
        _replica(**{"master-link-status": "err"}),  # restarted, still syncing
        _replica(is_odown=True),
    ]
    assert replicas_in_sync(replicas, MASTER) == 1


def test_a_replica_seen_in_sync_is_waited_for_until_the_sentinels_see_it_down():
    """Mid-failover the replica being promoted stops replicating the old master, and the other is moved to
    it: counted as in sync now, the old master's writes would wait for fewer and fewer, then none."""
    seen: set[str] = set()
    promoted, other = "127.0.0.1:6381", "127.0.0.1:6382"
    steady = [_replica(promoted), _replica(other)]
    assert replicas_to_wait_for(steady, MASTER, seen) == 2
    promoting = [_replica(promoted, **{"role-reported": "master", "master-port": 0}), _replica(other)]
    assert replicas_in_sync(promoting, MASTER) == 1
    assert replicas_to_wait_for(promoting, MASTER, seen) == 2
    moved = [promoting[0], _replica(other, **{"master-port": 6381})]
    assert replicas_in_sync(moved, MASTER) == 0
    assert replicas_to_wait_for(moved, MASTER, seen) == 2  # a WAIT on the old master can never gather them
    relinking = [_replica(promoted, is_disconnected=True, **{"role-reported": "master"}), _replica(other)]
    assert replicas_to_wait_for(relinking, MASTER, seen) == 2  # promoting it dropped the sentinels' links
    dead = [_replica(promoted, is_sdown=True), _replica(other)]
    assert replicas_to_wait_for(dead, MASTER, seen) == 1


def test_what_was_seen_in_sync_counts_only_for_the_same_era_of_the_same_master():
    """A master failed away from and back to: its old replica, listed again but not yet in sync, is not
    waited for (the writes would wait out its demotion and resync for nothing)."""
    seen = ReplicasSeen()
    state = {"ip": "127.0.0.1", "port": 6380, "config-epoch": 1}
    assert seen.count(MASTER, state, [_replica("127.0.0.1:6379")]) == 1
    returning = _replica("127.0.0.1:6379", **{"role-reported": "master", "master-port": 0})
    assert seen.count(MASTER, state, [returning]) == 1
    assert seen.count(MASTER, {**state, "config-epoch": 3}, [returning]) == 0
    with pytest.raises(NoCount):  # a sentinel that names another master counts nothing for this one
        seen.count(MASTER, {**state, "port": 6379}, [returning])


def test_a_replica_never_seen_in_sync_is_not_waited_for():
    """The old master, listed as a replica of the new one until it is demoted and has resynced."""
    seen: set[str] = set()
    old_master = _replica("127.0.0.1:6379", **{"role-reported": "master", "master-port": 0})
    assert replicas_to_wait_for([old_master, _replica()], MASTER, seen) == 1
    assert replicas_to_wait_for([_replica("127.0.0.1:6379"), _replica()], MASTER, seen) == 2


@pytest.mark.parametrize(
    ("command", "is_write"),
    [
        (("EVALSHA", "abc", 1, "k"), True),
        ((b"hset", "k", "f", "v"), True),
        (("PUBLISH", "c", ""), True),
        (("XREADGROUP", "g", "c"), True),  # it moves the group's pending list: replicated
        (("GET", "k"), False),
        ((b"lrange", "k", 0, -1), False),
        (("XREAD", "COUNT", 1), False),
    ],
)
def test_anything_not_known_read_only_is_a_write(command, is_write):
    assert writes([command]) is is_write


def test_the_read_only_list_names_no_write():
    assert not READ_ONLY_COMMANDS & {"SET", "HSET", "EVAL", "EVALSHA", "XADD", "XACK", "PUBLISH", "DEL", "RPUSH"}


def test_no_sentinels_and_no_minimum_means_no_wait_at_all():
    assert ReplicaCount.from_settings(Settings(), None) is None
    count = ReplicaCount.from_settings(Settings(redis_min_replica_acks=2), None)
    assert count is not None and count.min_acks == 2


async def test_the_sentinels_count_is_asked_at_most_once_a_second_and_at_once_after_a_shortfall():
    answers = [2, 1]
    asked = []

    async def counter() -> int:
        asked.append(True)
        return answers[len(asked) - 1]

    count = ReplicaCount(min_acks=0, timeout_ms=100, counter=counter)
    assert await count.required() == 2
    assert await count.required() == 2 and len(asked) == 1  # cached
    with pytest.raises(NotReplicated) as short:
        count.check(1, 2)
    assert short.value.required == 2 and short.value.acknowledged == 1
    assert await count.required() == 1 and len(asked) == 2  # recounted after the shortfall


async def test_the_minimum_holds_when_the_sentinels_count_fewer_or_cannot_be_reached():
    async def away() -> int:
        raise OSError("no sentinel answers")

    count = ReplicaCount(min_acks=1, timeout_ms=100, counter=away)
    assert await count.required() == 1


async def test_a_count_that_cannot_be_taken_keeps_the_last_one():
    """Sentinels busy with a failover may not answer: waiting for none then would let the old master's
    writes through unacknowledged."""
    answers: list[int | Exception] = [2, OSError("no sentinel answers"), 1]

    async def counter() -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    count = ReplicaCount(min_acks=0, timeout_ms=100, counter=counter)
    assert await count.required() == 2
    count._due_at = 0.0
    assert await count.required() == 2  # the sentinels did not answer: as many as last time
    count._due_at = 0.0
    assert await count.required() == 1  # asked again, and answered


def test_a_shortfall_is_a_connection_error_every_retry_loop_already_handles():
    from shared.redis_client import REDIS_UNAVAILABLE

    assert issubclass(NotReplicated, REDIS_UNAVAILABLE)
    count = ReplicaCount(min_acks=1, timeout_ms=100)
    count.check(1, 1)
    with pytest.raises(NotReplicated):
        count.check(0, 1)
    with pytest.raises(NotReplicated) as refused:
        count.check(RuntimeError("WAIT cannot be used with replica instances"), 1)
    assert isinstance(refused.value.__cause__, RuntimeError)


def test_the_blocking_count_uses_a_plain_counter():
    count = ReplicaCount(min_acks=0, timeout_ms=100, counter=lambda: 2)
    assert count.required_blocking() == 2


def test_a_cluster_primary_waits_for_the_replicas_it_reports_streaming():
    from shared.redis_replicas import online_replicas

    info = {
        "role": "master",
        "connected_slaves": 3,
        "slave0": {"ip": "127.0.0.1", "port": 7003, "state": "online", "offset": 10, "lag": 0},
        "slave1": {"ip": "127.0.0.1", "port": 7004, "state": "wait_bgsave", "offset": 0, "lag": 0},
        "slave2": {"ip": "127.0.0.1", "port": 7005, "state": "online", "offset": 9, "lag": 1},
        "master_repl_offset": 10,
    }
    assert online_replicas(info) == 2
    assert online_replicas({"role": "master", "connected_slaves": 0}) == 0
