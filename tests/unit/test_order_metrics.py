"""The order counters and histograms, and the quote ages, as Prometheus would read them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared.domain.events import OrderEvent, utc_now
from shared.domain.lifecycle import OrderStatus
from shared.domain.orders import Order, OrderType
from shared.observability.orders import LATENCY_BUCKETS, ExecutionMetrics, NoExecutionMetrics, OrderOutcomes
from shared.observability.quote_ages import QuoteAges
from shared.quote_cache import PairRound
from shared.venues.base import Dex, Quote


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def order(kind: OrderType = OrderType.MARKET, age_s: float = 2.0) -> Order:
    return Order(
        order_id=uuid4(),
        type=kind,
        token_in="SOL",
        token_out="USDC",
        amount=Decimal("1.5"),
        slippage_bps=50,
        created_at=utc_now() - timedelta(seconds=age_s),
    )


def terminal(of: Order, status: OrderStatus, error: str | None = None) -> OrderEvent:
    return OrderEvent(of.order_id, 5, status, of.type.value, error=error)


def test_an_ended_order_counts_by_type_and_status_and_observes_its_life_from_createdAt():
    registry = CollectorRegistry()
    outcomes = OrderOutcomes(registry)
    confirmed = order(age_s=2.0)
    outcomes.ended(confirmed, terminal(confirmed, OrderStatus.CONFIRMED))
    expired = order(OrderType.LIMIT, age_s=400)
    outcomes.ended(expired, terminal(expired, OrderStatus.EXPIRED))
    got = samples(registry)
    assert got[("engine_orders_terminal_total", (("status", "confirmed"), ("type", "market")))] == 1
    assert got[("engine_orders_terminal_total", (("status", "expired"), ("type", "limit")))] == 1
    life = (("status", "confirmed"), ("type", "market"))
    assert got[("engine_order_duration_seconds_count", life)] == 1
    assert 1.9 < got[("engine_order_duration_seconds_sum", life)] < 3
    assert got[("engine_order_duration_seconds_bucket", (("le", "1.0"), *life))] == 0
    assert got[("engine_order_duration_seconds_bucket", (("le", "2.5"), *life))] == 1
    rested = (("le", "300.0"), ("status", "expired"), ("type", "limit"))
    assert got[("engine_order_duration_seconds_bucket", rested)] == 0


def test_a_failed_order_also_counts_under_its_error_code():
    registry = CollectorRegistry()
    outcomes = OrderOutcomes(registry)
    failed = order()
    outcomes.ended(failed, terminal(failed, OrderStatus.FAILED, error="slippage_exceeded"))
    got = samples(registry)
    assert got[("engine_orders_failed_total", (("error", "slippage_exceeded"), ("type", "market")))] == 1
    assert got[("engine_orders_terminal_total", (("status", "failed"), ("type", "market")))] == 1


def test_triggers_count_by_type_and_zero_counts_nothing():
    registry = CollectorRegistry()
    outcomes = OrderOutcomes(registry)
    outcomes.triggered("limit", 3)
    outcomes.triggered("sniper", 0)
    got = samples(registry)
    assert got[("engine_orders_triggered_total", (("type", "limit"),))] == 3
    assert ("engine_orders_triggered_total", (("type", "sniper"),)) not in got


def test_execution_metrics_stage_retries_and_dead_letters():
    registry = CollectorRegistry()
    metrics = ExecutionMetrics(registry)
    start = utc_now()
    metrics.stage("market", "pending_to_routing", start, start + timedelta(milliseconds=30))
    metrics.stage("market", "pending_to_routing", None, start)  # unknown start: nothing observed
    metrics.stage("market", "routing_to_submitted", start + timedelta(seconds=1), start)  # clock skew: 0, not < 0
    metrics.retried(transient=True)
    metrics.retried(transient=False)
    metrics.dead_lettered()
    got = samples(registry)
    stage = (("stage", "pending_to_routing"), ("type", "market"))
    assert got[("engine_order_stage_seconds_count", stage)] == 1
    assert abs(got[("engine_order_stage_seconds_sum", stage)] - 0.03) < 1e-6
    assert got[("engine_order_stage_seconds_sum", (("stage", "routing_to_submitted"), ("type", "market")))] == 0
    assert got[("engine_execution_retries_total", (("reason", "transient"),))] == 1
    assert got[("engine_execution_retries_total", (("reason", "error"),))] == 1
    assert got[("engine_execution_dead_letters_total", ())] == 1


def test_buckets_span_a_fast_stage_to_an_hour_of_rest():
    assert LATENCY_BUCKETS[0] <= 0.005 and LATENCY_BUCKETS[-1] >= 3600
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_the_null_metrics_accept_every_report():
    metrics = NoExecutionMetrics()
    ended = order()
    metrics.stage("market", "pending_to_routing", utc_now(), utc_now())
    metrics.ended(ended, terminal(ended, OrderStatus.CONFIRMED))
    metrics.retried(True)
    metrics.dead_lettered()


def quote(dex: Dex, price: str, ts: float) -> Quote:
    p = Decimal(price)
    return Quote(dex, "SOL", "USDC", Decimal(1), p, Decimal("0.0025"), p, p, Decimal(0), Decimal(10**6), ts)


def test_quote_ages_follow_what_the_quote_stream_wrote_per_pair_and_venue():
    now = 1_000_000.0
    ages = QuoteAges(clock=lambda: now)
    registry = CollectorRegistry()
    registry.register(ages)
    fresh = [quote(Dex.RAYDIUM, "150", now - 0.2), quote(Dex.METEORA, "151", now - 0.3)]
    ages.record([PairRound("SOL", "USDC", fresh, [])])
    # next round: meteora fails, its last good quote is rewritten stale; BEST is raydium's new quote
    ages.record([PairRound("SOL", "USDC", [quote(Dex.RAYDIUM, "150", now - 0.1)], [fresh[1]])])
    got = samples(registry)

    def age(venue: str) -> float:
        return got[("engine_quote_age_seconds", (("pair", "SOL-USDC"), ("venue", venue)))]

    assert round(age("raydium"), 3) == 0.1
    assert round(age("meteora"), 3) == 0.3  # growing while it fails
    assert round(age("best"), 3) == 0.1
