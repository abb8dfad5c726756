"""The conditional book's metrics: triggers by the condition that fired, and what applying ticks costs.

Resting orders by type are read from Redis at scrape time (`resting_conditional_orders` in redis_gauges.py),
so every replica reports the same book. In-process only, never an I/O call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.domain.conditional import Taken
from shared.domain.order_types import OrderType
from shared.observability.orders import OrderOutcomes, _Children

#: Seconds per batch of ticks: a batch that fires nothing costs tens of microseconds of Redis time plus a round
#: trip; the tail is for batches that fire thousands (each one a hand-over).
TICK_COST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class ConditionalMetrics:
    def __init__(self, registry: CollectorRegistry, outcomes: OrderOutcomes) -> None:
        self.outcomes = outcomes
        self._triggers = _Children(
            Counter(
                "engine_conditional_triggers_total",
                "Conditional orders triggered, by the condition that fired (stop, take_profit, trail)",
                ["condition"],
                registry=registry,
            )
        )
        self._tick_cost = Histogram(
            "engine_conditional_tick_seconds",
            "Time to apply one batch of BEST ticks to the conditional book (every pair, before hand-over)",
            buckets=TICK_COST_BUCKETS,
            registry=registry,
        )
        self._ticks = Counter(
            "engine_conditional_ticks_total", "BEST ticks read by the conditional book", registry=registry
        )

    def fired(self, handed: Sequence[tuple[Taken, OrderType]]) -> None:
        """Orders the book fired and handed over (not those a cancel or expiry had ended first), with their types."""
        for taken, order_type in handed:
            self._triggers(taken.condition.value).inc()
            self.outcomes.triggered(order_type.value)

    @contextmanager
    def timing_ticks(self, count: int) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self._tick_cost.observe(time.perf_counter() - started)
        self._ticks.inc(count)
