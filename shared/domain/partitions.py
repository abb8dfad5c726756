"""Order partitions: which shard of Redis an order lives on, decided once and carried in its id.

Everything one order owns (its hash, events, lease, idempotency key, execution message, its entries in the
event stream) is named under one hash tag, `{p<k>}`, so that on a Redis Cluster it all lives on one slot and
every script that moves the order touches one slot (docs/sharding.md). `k` is the order's partition, the
first byte of its id: a version-4 UUID whose first byte the engine chose when it accepted the order. Anyone
holding the id can name its keys, with no lookup, and the id is still a UUID.

`PARTITIONS` (a setting) says how many partitions new orders are spread over, 0 to PARTITIONS - 1; every
consumer reads all of them. On one Redis (the default, one partition) every tag is on the one server and
nothing changes but the key names. Raising it leaves existing orders where they are (their first byte is
below the old count, hence the new). Lowering it strands the partitions above the new count until they are
drained: do it only with them empty.
"""

from __future__ import annotations

import hashlib
import secrets
from uuid import UUID

#: A partition is one byte of the order id.
MAX_PARTITIONS = 256


def partition_of(order_id: UUID | str) -> int:
    """The partition an order lives in: its id's first byte."""
    if isinstance(order_id, UUID):
        return order_id.bytes[0]
    return int(order_id[:2], 16)


def tag(partition: int) -> str:
    """The hash tag of a partition's keys."""
    return f"{{p{partition}}}"


def order_tag(order_id: UUID | str) -> str:
    return tag(partition_of(order_id))


def new_order_id(partition: int) -> UUID:
    """A random version-4 UUID in `partition`."""
    if not 0 <= partition < MAX_PARTITIONS:
        raise ValueError(f"partition {partition} is outside 0..{MAX_PARTITIONS - 1}")
    raw = bytearray(secrets.token_bytes(16))
    raw[0] = partition
    return UUID(bytes=bytes(raw), version=4)


def any_partition(partitions: int) -> int:
    """Where an order without an idempotency key goes: any partition, uniformly."""
    return secrets.randbelow(partitions)


def scope_partition(scope: str, partitions: int) -> int:
    """Where an order submitted with an idempotency key goes: always the same partition for the same key,
    so that the key's record and the order it names share a slot, and a retry finds the record with one
    read. (Changing PARTITIONS moves where a key points: a retry across the change is not recognised.)"""
    digest = hashlib.blake2b(scope.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % partitions


def all_partitions(partitions: int) -> range:
    """The partitions a consumer reads."""
    return range(partitions)


def per_partition(name: str, partition: int) -> str:
    """The name of one partition's instance of something (a heartbeat, a thread): partition 0 keeps the plain
    name, so a single-partition engine reads as before."""
    return name if partition == 0 else f"{name}-p{partition}"
