"""The order counters and histograms, touched on the hot path: in-process only, never an I/O call.

Cost: prometheus_client's `labels()` takes a lock and validates its arguments; each labelled child is
therefore looked up once and kept, so an order pays a dict lookup and a lock per sample, small against
the rest of its engine CPU. Labels are low-cardinality by construction: order types,
statuses, stage names, error codes, routes (single, split), venues and re-quote reasons are fixed sets in the
code; no order id, user or pair.

Latencies are measured between the timestamps of the order's own events (the ones every client sees), so a
stage that spans two processes (pending in the API → routing in a worker) is measured like any other.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.domain.orders import Order

#: From a few milliseconds (a stage with the simulated latencies off) to an hour (a limit order resting).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)

#: Percent, 0.001 % (a small order in a deep pool) to 10 % (one that drains a thin pool; beyond, +Inf): a
#: 1-2.5-5 ladder, so p50/p95 stay readable at every order size.
PRICE_IMPACT_PCT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

#: Seconds. Quotes are refreshed every 500 ms and a routing quote is valid for 2 s: dense up to 2 s so the p95
#: shows how close sends come to expiry; the tail catches sends held up by retries or a slow venue.
QUOTE_AGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)

#: Basis points of the quoted output, symmetric around 0 (beating the quote is as telling as missing it): fine
#: within the default 50 bps slippage, then wider tails for a leg that moved far (only the total is bounded).
#: With a negative bucket prometheus_client exports no `_sum` (OpenMetrics), so the board reads quantiles only.
_SHORTFALL_SIDE = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
SHORTFALL_BPS_BUCKETS = (*(-b for b in reversed(_SHORTFALL_SIDE)), 0, *_SHORTFALL_SIDE)

_BPS = Decimal(10_000)


def seconds_between(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


class _Children:
    """Labelled children of one metric, resolved once each (see the module's docstring)."""

    __slots__ = ("_metric", "_children")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*labels)
        return child


class OrderOutcomes:
    """Orders ending (confirmed, failed, cancelled, expired) and resting orders triggering, wherever that is
    decided: the execution worker, the limit and sniper workers (triggers, expiries), the API (cancels)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._terminal = _Children(
            Counter(
                "engine_orders_terminal_total",
                "Orders that reached a terminal status, by order type and status",
                ["type", "status"],
                registry=registry,
            )
        )
        self._failed = _Children(
            Counter(
                "engine_orders_failed_total",
                "Orders that ended failed, by order type and error code",
                ["type", "error"],
                registry=registry,
            )
        )
        self._duration = _Children(
            Histogram(
                "engine_order_duration_seconds",
                "Accepted (createdAt) to terminal event, by order type and terminal status",
                ["type", "status"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self._triggered = _Children(
            Counter(
                "engine_orders_triggered_total",
                "Resting (limit, sniper, conditional) orders handed to execution",
                ["type"],
                registry=registry,
            )
        )

    def ended(self, order: Order, event: OrderEvent) -> None:
        """`event` (terminal) was appended to `order`: count it once, where the append succeeded."""
        kind, status = order.type.value, event.status.value
        self._terminal(kind, status).inc()
        self._duration(kind, status).observe(seconds_between(order.created_at, event.timestamp))
        if event.status is OrderStatus.FAILED:
            self._failed(kind, event.error or "unknown").inc()

    def triggered(self, order_type: str, count: int = 1) -> None:
        if count:
            self._triggered(order_type).inc(count)


class ExecutionMetrics:
    """What the execution worker's `OrderExecutor` reports: stage latencies, retries, dead letters, outcomes, and
    the quality of each execution (split share, price impact, quote age at send, re-quotes, shortfall per leg)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.outcomes = OrderOutcomes(registry)
        self._stage = _Children(
            Histogram(
                "engine_order_stage_seconds",
                "Time between two lifecycle events of an order, by order type and stage "
                "(pending_to_routing, triggered_to_routing, routing_to_submitted, submitted_to_confirmed, "
                "submitted_to_failed)",
                ["type", "stage"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self._retries = _Children(
            Counter(
                "engine_execution_retries_total",
                "Failed execution attempts handed back to dramatiq for a retry, by cause "
                "(transient: a venue was unavailable; error: anything else)",
                ["reason"],
                registry=registry,
            )
        )
        self._dead_letters = Counter(
            "engine_execution_dead_letters_total",
            "Execution messages whose last attempt failed (the order is failed, the message dead-lettered)",
            registry=registry,
        )
        self._routes = _Children(
            Counter(
                "engine_routes_total",
                "Orders routed, by route (single: the whole order on one venue; split: across both venues)",
                ["route"],
                registry=registry,
            )
        )
        self._price_impact = _Children(
            Histogram(
                "engine_route_price_impact_pct",
                "Price impact of the routed plan in percent (1.5 = 1.5 %), by route (single, split)",
                ["route"],
                buckets=PRICE_IMPACT_PCT_BUCKETS,
                registry=registry,
            )
        )
        self._quote_age = _Children(
            Histogram(
                "engine_quote_age_at_send_seconds",
                "Age of the routing quote when its transaction was sent, by route (single, split)",
                ["route"],
                buckets=QUOTE_AGE_BUCKETS,
                registry=registry,
            )
        )
        self._requotes = _Children(
            Counter(
                "engine_requotes_total",
                "Orders routed again, by reason (quote_expired: the quote outlived its validity before the send; "
                "blockhash_expired: the sent transaction's blockhash expired before it landed)",
                ["reason"],
                registry=registry,
            )
        )
        self._blockhash_expired = _Children(
            Counter(
                "engine_blockhash_expired_total",
                "Sent transactions whose blockhash expired before they landed, by route (single, split)",
                ["route"],
                registry=registry,
            )
        )
        self._shortfall = _Children(
            Histogram(
                "engine_execution_shortfall_bps",
                "(quoted - executed) / quoted output of one leg, in basis points; negative when the execution beat "
                "the quote. By dex (the leg's venue: raydium, meteora) and route (single, split)",
                ["dex", "route"],
                buckets=SHORTFALL_BPS_BUCKETS,
                registry=registry,
            )
        )

    def stage(self, order_type: str, stage: str, start: datetime | None, end: datetime) -> None:
        """`start` is None when the stage's first event's time is unknown: nothing is observed."""
        if start is not None:
            self._stage(order_type, stage).observe(seconds_between(start, end))

    def ended(self, order: Order, event: OrderEvent) -> None:
        self.outcomes.ended(order, event)

    def retried(self, transient: bool) -> None:
        self._retries("transient" if transient else "error").inc()

    def dead_lettered(self) -> None:
        self._dead_letters.inc()

    def routed(self, route: str, price_impact_pct: Decimal) -> None:
        """`route` is "single" or "split"; the counter alone gives the share of orders that split."""
        self._routes(route).inc()
        self._price_impact(route).observe(float(price_impact_pct))

    def sent(self, route: str, quote_age_s: float) -> None:
        self._quote_age(route).observe(max(0.0, quote_age_s))  # clock skew between processes: 0, not < 0

    def requoted(self, reason: str) -> None:
        self._requotes(reason).inc()

    def blockhash_expired(self, route: str) -> None:
        self._blockhash_expired(route).inc()

    def leg_settled(self, dex: str, route: str, expected_out: Decimal, executed_out: Decimal) -> None:
        """A leg with no quoted output has no shortfall to speak of (and would divide by zero): dropped."""
        if expected_out > 0:
            bps = (expected_out - executed_out) / expected_out * _BPS
            self._shortfall(dex, route).observe(float(bps))


class NoExecutionMetrics:
    """For executors built without a registry (tests, tools): every report is dropped."""

    def stage(self, order_type: str, stage: str, start: datetime | None, end: datetime) -> None:
        pass

    def ended(self, order: Order, event: OrderEvent) -> None:
        pass

    def retried(self, transient: bool) -> None:
        pass

    def dead_lettered(self) -> None:
        pass

    def routed(self, route: str, price_impact_pct: Decimal) -> None:
        pass

    def sent(self, route: str, quote_age_s: float) -> None:
        pass

    def requoted(self, reason: str) -> None:
        pass

    def blockhash_expired(self, route: str) -> None:
        pass

    def leg_settled(self, dex: str, route: str, expected_out: Decimal, executed_out: Decimal) -> None:
        pass
