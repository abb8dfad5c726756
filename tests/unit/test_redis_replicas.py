"""How many replicas a write waits for, and what counts as a write: no server needed."""

from __future__ import annotations

import pytest

from shared.redis_replicas import READ_ONLY_COMMANDS, NotReplicated, ReplicaCount, replicas_in_sync, writes
from shared.settings import Settings

MASTER = ("127.0.0.1", 6380)


def _replica(**fields: object) -> dict[str, object]:
    in_sync = {"role-reported": "slave", "master-link-status": "ok", "master-host": "127.0.0.1", "master-port": 6380}
    return {"is_sdown": False, "is_odown": False, **in_sync, **fields}


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
