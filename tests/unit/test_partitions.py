"""Order partitions: carried in the id, stable per idempotency key, spread over what PARTITIONS allows."""

from __future__ import annotations

from collections import Counter
from uuid import UUID

import pytest
from redis.crc import key_slot

from shared import redis_keys
from shared.domain.orders import OrderRequest, accept
from shared.domain.partitions import (
    MAX_PARTITIONS,
    new_order_id,
    partition_of,
    scope_partition,
    tag,
)


@pytest.mark.parametrize("partition", [0, 1, 17, MAX_PARTITIONS - 1])
def test_an_order_id_carries_its_partition_and_is_still_a_version_4_uuid(partition):
    order_id = new_order_id(partition)
    assert partition_of(order_id) == partition_of(str(order_id)) == partition
    assert order_id.version == 4 and order_id.variant == "specified in RFC 4122"
    assert UUID(str(order_id)) == order_id


def test_a_partition_outside_one_byte_is_refused():
    with pytest.raises(ValueError):
        new_order_id(MAX_PARTITIONS)


def test_everything_an_order_owns_is_on_its_partitions_slot():
    order_id = new_order_id(5)
    slot = key_slot(tag(5).encode())
    owned = [
        redis_keys.order(order_id),
        redis_keys.order_events(order_id),
        redis_keys.order_lease(order_id),
        redis_keys.events_stream(5),
        redis_keys.idempotency("c:any-key", 5),
        redis_keys.dead_letter_replay(order_id),
    ]
    assert {key_slot(key.encode()) for key in owned} == {slot}


def test_one_partition_puts_every_order_in_partition_zero():
    request = OrderRequest.model_validate({"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"})
    assert {partition_of(accept(request).order_id) for _ in range(50)} == {0}


def test_orders_without_a_key_spread_over_every_partition():
    request = OrderRequest.model_validate({"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"})
    spread = Counter(partition_of(accept(request, partitions=4).order_id) for _ in range(2000))
    assert set(spread) == {0, 1, 2, 3} and min(spread.values()) > 350


def test_an_idempotency_key_always_sends_its_order_to_the_same_partition():
    request = OrderRequest.model_validate({"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"})
    placed = {partition_of(accept(request, idempotency_key="retry-me", partitions=8).order_id) for _ in range(20)}
    assert placed == {scope_partition("c:retry-me", 8)}
    assert len({scope_partition(f"c:key-{i}", 8) for i in range(200)}) == 8


def test_an_order_key_names_its_order_and_no_other_key_does():
    order_id = new_order_id(3)
    assert redis_keys.order_id_of(redis_keys.order(order_id)) == str(order_id)
    for other in (redis_keys.order_events(order_id), redis_keys.order_lease(order_id), "order:x", "orders:{p0}:x"):
        assert redis_keys.order_id_of(other) is None, other


def test_one_db_sync_process_reports_its_partitions_syncers_as_one():
    from shared.observability.dbsync import combined

    quiet = {"persistedEntries": 0, "batches": 0, "rebuiltEntries": 0, "lagSeconds": 0.0, "lastPersistedAt": None}
    busy = {"persistedEntries": 7, "batches": 2, "rebuiltEntries": 1, "lagSeconds": 0.4, "lastPersistedAt": 99.0}
    down = {"postgresDown": False, "redisDown": False}
    stats = combined([{**quiet, **down}, {**busy, **down, "postgresDown": True}])
    assert stats == {
        "persistedEntries": 7,
        "batches": 2,
        "rebuiltEntries": 1,
        "lagSeconds": 0.4,
        "lastPersistedAt": 99.0,
        "postgresDown": True,
        "redisDown": False,
    }
