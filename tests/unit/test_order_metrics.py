"""The order counters and histograms, and the quote ages, as Prometheus would read them."""

from __future__ import annotations

import inspect
from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared.domain.events import OrderEvent, utc_now
from shared.domain.lifecycle import OrderStatus
from shared.domain.orders import Order, OrderType
from shared.observability.orders import (
    LATENCY_BUCKETS,
    PRICE_IMPACT_PCT_BUCKETS,
    QUOTE_AGE_BUCKETS,
    SHORTFALL_BPS_BUCKETS,
    ExecutionMetrics,
    NoExecutionMetrics,
    OrderOutcomes,
)
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


def test_routes_count_by_route_and_observe_their_price_impact_in_percent():
    registry = CollectorRegistry()
    metrics = ExecutionMetrics(registry)
    metrics.routed("single", Decimal("0.02"))
    metrics.routed("split", Decimal("0.41"))
    metrics.routed("split", Decimal("1.5"))
    got = samples(registry)
    assert got[("engine_routes_total", (("route", "single"),))] == 1
    assert got[("engine_routes_total", (("route", "split"),))] == 2
    split = (("route", "split"),)
    assert got[("engine_route_price_impact_pct_count", split)] == 2
    assert abs(got[("engine_route_price_impact_pct_sum", split)] - 1.91) < 1e-9
    assert got[("engine_route_price_impact_pct_bucket", (("le", "0.5"), *split))] == 1
    assert got[("engine_route_price_impact_pct_bucket", (("le", "2.5"), *split))] == 2
    assert got[("engine_route_price_impact_pct_bucket", (("le", "0.025"), ("route", "single")))] == 1


def test_quote_age_at_send_is_observed_by_route():
    registry = CollectorRegistry()
    metrics = ExecutionMetrics(registry)
    metrics.sent("single", 0.3)
    metrics.sent("split", 1.8)
    metrics.sent("split", -0.01)  # clock skew between processes: 0, not < 0
    got = samples(registry)
    assert got[("engine_quote_age_at_send_seconds_count", (("route", "single"),))] == 1
    assert abs(got[("engine_quote_age_at_send_seconds_sum", (("route", "single"),))] - 0.3) < 1e-9
    split = (("route", "split"),)
    assert got[("engine_quote_age_at_send_seconds_count", split)] == 2
    assert abs(got[("engine_quote_age_at_send_seconds_sum", split)] - 1.8) < 1e-9
    assert got[("engine_quote_age_at_send_seconds_bucket", (("le", "0.05"), *split))] == 1
    assert got[("engine_quote_age_at_send_seconds_bucket", (("le", "1.5"), *split))] == 1
    assert got[("engine_quote_age_at_send_seconds_bucket", (("le", "2.0"), *split))] == 2


def test_requotes_count_by_reason_and_expired_blockhashes_by_route():
    registry = CollectorRegistry()
    metrics = ExecutionMetrics(registry)
    metrics.requoted("quote_expired")
    metrics.requoted("quote_expired")
    metrics.requoted("blockhash_expired")
    metrics.blockhash_expired("split")
    got = samples(registry)
    assert got[("engine_requotes_total", (("reason", "quote_expired"),))] == 2
    assert got[("engine_requotes_total", (("reason", "blockhash_expired"),))] == 1
    assert got[("engine_blockhash_expired_total", (("route", "split"),))] == 1
    assert ("engine_blockhash_expired_total", (("route", "single"),)) not in got


def test_a_legs_shortfall_is_in_bps_of_its_quote_and_negative_when_it_beat_the_quote():
    registry = CollectorRegistry()
    metrics = ExecutionMetrics(registry)
    metrics.leg_settled("raydium", "split", Decimal("180000"), Decimal("179910"))  # 5 bps short
    metrics.leg_settled("meteora", "split", Decimal("110000"), Decimal("110022"))  # beat it by 2 bps
    metrics.leg_settled("meteora", "single", Decimal(0), Decimal("5"))  # no quoted output: dropped
    got = samples(registry)
    raydium = (("dex", "raydium"), ("route", "split"))
    meteora = (("dex", "meteora"), ("route", "split"))

    def bucket(dex: str, le: str) -> float:
        return got[("engine_execution_shortfall_bps_bucket", (("dex", dex), ("le", le), ("route", "split")))]

    assert got[("engine_execution_shortfall_bps_count", raydium)] == 1
    assert (bucket("raydium", "2.0"), bucket("raydium", "5.0")) == (0, 1)  # exactly 5: in the le=5 bucket
    assert got[("engine_execution_shortfall_bps_count", meteora)] == 1
    assert (bucket("meteora", "-5.0"), bucket("meteora", "-2.0"), bucket("meteora", "0.0")) == (0, 1, 1)
    # A histogram with negative buckets has no _sum (OpenMetrics; prometheus_client leaves it out): quantiles only.
    assert ("engine_execution_shortfall_bps_sum", meteora) not in got
    assert ("engine_execution_shortfall_bps_count", (("dex", "meteora"), ("route", "single"))) not in got


def test_execution_quality_buckets_cover_their_ranges_in_order():
    assert PRICE_IMPACT_PCT_BUCKETS[0] <= 0.001 and PRICE_IMPACT_PCT_BUCKETS[-1] >= 10
    assert QUOTE_AGE_BUCKETS[0] <= 0.05 and 2 in QUOTE_AGE_BUCKETS  # a routing quote's validity is a boundary
    assert list(SHORTFALL_BPS_BUCKETS) == [-b for b in reversed(SHORTFALL_BPS_BUCKETS)]  # symmetric around 0
    assert 0 in SHORTFALL_BPS_BUCKETS and -100 in SHORTFALL_BPS_BUCKETS and SHORTFALL_BPS_BUCKETS[-1] > 100
    for buckets in (PRICE_IMPACT_PCT_BUCKETS, QUOTE_AGE_BUCKETS, SHORTFALL_BPS_BUCKETS):
        assert list(buckets) == sorted(set(buckets))


def test_the_null_metrics_accept_every_report():
    metrics = NoExecutionMetrics()
    ended = order()
    metrics.stage("market", "pending_to_routing", utc_now(), utc_now())
    metrics.ended(ended, terminal(ended, OrderStatus.CONFIRMED))
    metrics.retried(True)
    metrics.dead_lettered()
    metrics.routed("split", Decimal("0.41"))
    metrics.sent("split", 0.3)
    metrics.requoted("quote_expired")
    metrics.blockhash_expired("single")
    metrics.leg_settled("raydium", "split", Decimal(100), Decimal(99))


def test_the_null_metrics_have_every_method_of_the_real_ones_with_the_same_signature():
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_")
        }

    assert public(NoExecutionMetrics) == public(ExecutionMetrics)


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
