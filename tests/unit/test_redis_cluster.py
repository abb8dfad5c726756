"""What the cluster router decides without a server: a command's keys and slot, the slot map, INFO's pick."""

from __future__ import annotations

import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import ClusterCrossSlotError

from shared.redis_cluster import _fullest, command_keys, command_name, slot_map, slot_of


@pytest.mark.parametrize(
    ("args", "keys"),
    [
        (("GET", "a"), ["a"]),
        (("HSET", "h", "f", "v"), ["h"]),
        (("EVALSHA", "abc", 2, "k1", "k2", "arg"), ["k1", "k2"]),
        (("EVALSHA", "abc", 0, "arg"), []),
        (("DEL", "a", "b"), ["a", "b"]),
        (("BLPOP", "l1", "l2", 2), ["l1", "l2"]),
        (("XREAD", "COUNT", 5, "BLOCK", 100, "STREAMS", "s1", "s2", "0-0", "$"), ["s1", "s2"]),
        (("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"), ["s"]),
        (("BLMOVE", "src", "dst", "LEFT", "LEFT", 1), ["src", "dst"]),
        (("XINFO GROUPS", "s"), ["s"]),
        (("SCRIPT LOAD", "return 1"), []),  # redis-py sends the subcommand in the name
        (("PING",), []),
        (("INFO", "memory"), []),
        (("CLUSTER SLOTS",), []),
    ],
)
def test_the_keys_a_command_names(args, keys):
    assert command_keys(args) == keys


def test_a_command_has_one_slot_or_none_and_two_are_refused_before_it_is_sent():
    assert slot_of(("SET", "order:{p3}:x", 1)) == key_slot(b"p3")
    assert slot_of(("EVALSHA", "abc", 2, "order:{p3}:x", "stream:events:{p3}")) == key_slot(b"p3")
    assert slot_of(("PING",)) is None
    with pytest.raises(ClusterCrossSlotError, match="EVALSHA names keys of 2 hash slots"):
        slot_of(("EVALSHA", "abc", 2, "order:{p3}:x", "stream:events:{p4}"))
    assert command_name((b"script load", "x")) == "SCRIPT"


def test_the_slot_map_names_each_slot_s_primary_and_none_where_uncovered():
    reply = [
        [0, 5460, [b"127.0.0.1", 7000, b"id1"], [b"127.0.0.1", 7003, b"id4"]],
        [5461, 10922, ["127.0.0.1", 7001, "id2"]],
    ]
    owners = slot_map(reply, "10.0.0.1")
    assert len(owners) == REDIS_CLUSTER_HASH_SLOTS
    assert owners[0] == owners[5460] == ("127.0.0.1", 7000)
    assert owners[5461] == owners[10922] == ("127.0.0.1", 7001)
    assert owners[10923] is None and owners[-1] is None


def test_an_empty_host_is_the_node_asked_and_an_unknown_one_serves_nothing():
    # A node that never met another does not know its own address: CLUSTER SLOTS says "" for it.
    owners = slot_map([[0, 100, [b"", 7000, b"id1"]], [101, 200, [b"?", 7001, b"id2"]]], "10.0.0.1")
    assert owners[0] == owners[100] == ("10.0.0.1", 7000)
    assert owners[101] is None and owners[200] is None


def test_info_answers_for_the_fullest_primary():
    low, high = {"used_memory": 100, "maxmemory": 1000}, {"used_memory": 600, "maxmemory": 1000}
    assert _fullest([low, high]) is high
    assert _fullest([{"used_memory": 5, "maxmemory": 0}, {"used_memory": 9, "maxmemory": 0}])["used_memory"] == 9
    assert _fullest(["x", "y"]) == "x"


@pytest.mark.parametrize(("partitions", "primaries"), [(6, 3), (12, 3), (16, 3), (8, 2), (6, 1), (256, 7), (2, 3)])
def test_slot_ranges_cover_every_slot_and_spread_the_partitions_evenly(partitions, primaries):
    from shared.domain.partitions import tag
    from shared.redis_cluster import partition_slot_ranges

    ranges = partition_slot_ranges(partitions, primaries)
    assert ranges[0][0] == 0 and ranges[-1][1] == REDIS_CLUSTER_HASH_SLOTS - 1
    assert all(end + 1 == next_start for (_, end), (next_start, _) in zip(ranges, ranges[1:], strict=False))
    slots = [key_slot(tag(partition).encode()) for partition in range(partitions)]
    counts = [sum(start <= slot <= end for slot in slots) for start, end in ranges]
    assert sum(counts) == partitions
    if partitions >= primaries:
        assert max(counts) - min(counts) <= 1, counts
