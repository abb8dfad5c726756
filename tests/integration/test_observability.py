"""The metrics against a real Redis: what the executor reports per order, and the gauges read at scrape time."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import redis as sync_redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared import redis_keys
from shared.domain.orders import OrderRequest, accept
from shared.domain.partitions import new_order_id
from shared.execution.executor import ExecutionFailed, OrderExecutor
from shared.observability.orders import ExecutionMetrics, OrderOutcomes
from shared.observability.redis_gauges import (
    RedisGauges,
    armed_sniper_orders,
    dbsync_backlog,
    execution_backlog,
    resting_conditional_orders,
    resting_limit_orders,
)
from shared.store.expiries import ExpirySweeper
from shared.store.leases import OrderLeases
from shared.store.order_store import OrderStore
from shared.store.placement import placement
from shared.venues.base import Dex, VenueUnavailable
from shared.venues.ledger import InMemoryLedger
from shared.venues.simulated import build_swap_transaction
from tests.integration.test_executor import ScriptedVenue
from tests.support.orders import make_store, place_limit_order, place_market_order, place_sniper_order

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(registry: CollectorRegistry) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }


def executor(redis, registry, *, max_attempts=3, **failures) -> OrderExecutor:
    ledger = InMemoryLedger()
    venues = {dex: ScriptedVenue(dex, ledger, **failures) for dex in Dex}
    leases = OrderLeases(redis, ttl_ms=5000)
    return OrderExecutor(
        make_store(redis),
        leases,
        venues,
        build_swap_transaction,
        max_attempts=max_attempts,
        metrics=ExecutionMetrics(registry),
    )


async def test_a_confirmed_order_counts_once_and_observes_every_stage(redis):
    registry = CollectorRegistry()
    run = executor(redis, registry)
    order = await place_market_order(run.store)
    await run.execute(order.order_id, attempt=1)
    await run.execute(order.order_id, attempt=1)  # a duplicate delivery: the order is terminal, nothing counted
    got = samples(registry)
    assert got[("engine_orders_terminal_total", (("status", "confirmed"), ("type", "market")))] == 1
    assert got[("engine_order_duration_seconds_count", (("status", "confirmed"), ("type", "market")))] == 1
    for stage in ("pending_to_routing", "routing_to_submitted", "submitted_to_confirmed"):
        assert got[("engine_order_stage_seconds_count", (("stage", stage), ("type", "market")))] == 1, stage
    assert ("engine_execution_retries_total", (("reason", "transient"),)) not in got


async def test_a_retry_counts_as_a_retry_and_the_last_failure_as_a_dead_letter(redis):
    registry = CollectorRegistry()
    run = executor(redis, registry, max_attempts=2, quote_failures=10)
    order = await place_market_order(run.store)
    with pytest.raises(VenueUnavailable):
        await run.execute(order.order_id, attempt=1)
    with pytest.raises(ExecutionFailed):
        await run.execute(order.order_id, attempt=2)
    got = samples(registry)
    assert got[("engine_execution_retries_total", (("reason", "transient"),))] == 1
    assert got[("engine_execution_dead_letters_total", ())] == 1
    assert got[("engine_orders_terminal_total", (("status", "failed"), ("type", "market")))] == 1
    assert got[("engine_orders_failed_total", (("error", "venue_unavailable"), ("type", "market")))] == 1


async def test_an_expiry_sweep_reports_only_the_orders_it_expired(redis):
    store = make_store(redis)
    soon = (datetime.now(UTC) + timedelta(milliseconds=200)).isoformat()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await place_limit_order(store, "150", expiresAt=soon)
    await place_limit_order(store, "150", expiresAt=later)
    registry = CollectorRegistry()
    outcomes = OrderOutcomes(registry)
    await asyncio.sleep(0.3)
    sweeper = ExpirySweeper(redis, store, redis_keys.limit_expiries(0))
    assert await sweeper.sweep(on_expired=outcomes.ended) == 1
    got = samples(registry)
    assert got[("engine_orders_terminal_total", (("status", "expired"), ("type", "limit")))] == 1
    assert got[("engine_order_duration_seconds_count", (("status", "expired"), ("type", "limit")))] == 1


@pytest.fixture
def scrape_registry(redis_url):
    made: list[RedisGauges] = []

    def build(*readers) -> CollectorRegistry:
        registry = CollectorRegistry()
        gauges = RedisGauges(redis_url, readers)
        made.append(gauges)
        registry.register(gauges)
        return registry

    yield build
    for gauges in made:
        gauges.close()


async def test_backlog_and_book_gauges_are_read_from_redis_when_scraped(redis, scrape_registry):
    store = make_store(redis)
    await place_market_order(store)
    await place_market_order(store)
    for price in ("140", "150", "150.5"):
        await place_limit_order(store, price)
    await place_sniper_order(store, {"kind": "listing"})
    await place_sniper_order(store, {"kind": "liquidity", "minLiquidity": "1000"})
    registry = scrape_registry(
        execution_backlog(), resting_limit_orders([("SOL", "USDC"), ("USDC", "SOL")]), armed_sniper_orders()
    )
    got = samples(registry)
    assert got[("engine_execution_queue_depth", (("queue", "ready"),))] == 2
    assert got[("engine_execution_queue_depth", (("queue", "delayed"),))] == 0
    assert got[("engine_dead_letters", ())] == 0
    assert got[("engine_limit_orders_resting", (("pair", "SOL-USDC"),))] == 3
    assert got[("engine_limit_orders_resting", (("pair", "USDC-SOL"),))] == 0
    assert got[("engine_sniper_orders_armed", (("kind", "listing"), ("pair", "SOL-WIF")))] == 1
    assert got[("engine_sniper_orders_armed", (("kind", "liquidity"), ("pair", "SOL-WIF")))] == 1
    assert got[("engine_redis_gauges_ok", ())] == 1


async def test_the_book_gauges_add_up_every_partitions_books(redis, scrape_registry):
    store = OrderStore(redis, retention_s=3600, idempotency_ttl_s=3600, partitions=3)
    pair = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}
    bodies = [
        {**pair, "type": "limit", "limitPrice": "140"},
        {**pair, "type": "stop", "stopPrice": "100"},
        {**pair, "type": "oco", "stopPrice": "100", "takeProfitPrice": "200"},
        {**pair, "type": "trailing_stop", "trailBps": 100},
        {"type": "sniper", "tokenIn": "SOL", "tokenOut": "WIF", "amount": "0.1", "trigger": {"kind": "listing"}},
    ]
    for partition in (0, 2):  # the same orders in two partitions, none in the third
        for body in bodies:
            order = replace(accept(OrderRequest.model_validate(body)), order_id=new_order_id(partition))
            plan = placement(order)
            await store.create(order, plan.first_event, resting=plan.resting)
    pairs = [("SOL", "USDC")]
    registry = scrape_registry(
        resting_limit_orders(pairs, 3), resting_conditional_orders(pairs, 3), armed_sniper_orders(3)
    )
    got = samples(registry)
    assert got[("engine_limit_orders_resting", (("pair", "SOL-USDC"),))] == 2
    for kind in ("stop", "oco", "trailing_stop"):
        assert got[("engine_conditional_orders_resting", (("pair", "SOL-USDC"), ("type", kind)))] == 2, kind
    assert got[("engine_sniper_orders_armed", (("kind", "listing"), ("pair", "SOL-WIF")))] == 2
    assert got[("engine_redis_gauges_ok", ())] == 1
    one = samples(scrape_registry(resting_limit_orders(pairs), armed_sniper_orders()))  # partition 0's alone
    assert one[("engine_limit_orders_resting", (("pair", "SOL-USDC"),))] == 1
    assert one[("engine_sniper_orders_armed", (("kind", "listing"), ("pair", "SOL-WIF")))] == 1


async def test_dbsync_lag_is_the_age_of_the_oldest_event_not_acknowledged(redis, redis_url, scrape_registry):
    registry = scrape_registry(dbsync_backlog())
    got = samples(registry)  # no stream, no group yet: nothing lags
    assert got[("engine_dbsync_lag_seconds", ())] == 0 and got[("engine_event_stream_length", ())] == 0
    client = sync_redis.Redis.from_url(redis_url)
    try:
        client.xgroup_create(redis_keys.events_stream(0), redis_keys.DBSYNC_GROUP, id="0", mkstream=True)
        old_ms = int(datetime.now(UTC).timestamp() * 1000) - 5_000
        client.xadd(redis_keys.events_stream(0), {"o": "x"}, id=f"{old_ms}-0")
        client.xadd(redis_keys.events_stream(0), {"o": "y"})
        got = samples(registry)
        assert 4.5 < got[("engine_dbsync_lag_seconds", ())] < 30  # undelivered, 5 s old
        client.xreadgroup(redis_keys.DBSYNC_GROUP, "c", {redis_keys.events_stream(0): ">"}, count=1)
        got = samples(registry)
        assert 4.5 < got[("engine_dbsync_lag_seconds", ())] < 30  # delivered, not acknowledged
        assert got[("engine_dbsync_pending_entries", ())] == 1
        client.xack(redis_keys.events_stream(0), redis_keys.DBSYNC_GROUP, f"{old_ms}-0")
        assert samples(registry)[("engine_dbsync_lag_seconds", ())] < 2  # only the fresh one is left
        client.xreadgroup(redis_keys.DBSYNC_GROUP, "c", {redis_keys.events_stream(0): ">"}, count=10)
        pending = client.xpending(redis_keys.events_stream(0), redis_keys.DBSYNC_GROUP)
        client.xack(redis_keys.events_stream(0), redis_keys.DBSYNC_GROUP, pending["min"])
        got = samples(registry)
        assert got[("engine_dbsync_lag_seconds", ())] == 0 and got[("engine_event_stream_length", ())] == 2
    finally:
        client.close()


def test_a_redis_that_does_not_answer_leaves_the_gauges_out_and_says_so():
    gauges = RedisGauges("redis://127.0.0.1:1/0", [execution_backlog()])
    registry = CollectorRegistry()
    registry.register(gauges)
    try:
        got = samples(registry)
    finally:
        gauges.close()
    assert got == {("engine_redis_gauges_ok", ()): 0}
