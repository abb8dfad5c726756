"""How old the quotes in the cache are, per pair and venue: the quote stream records the `ts` of every quote
it wrote; the age is computed when Prometheus scrapes (no Redis call: the writer knows what it wrote)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.quote_cache import VENUE_KEYS, PairRound
from shared.routing import choose_best


class QuoteAges(Collector):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._written: dict[tuple[str, str], float] = {}  # (pair, venue) -> ts of the quote in the cache

    def record(self, rounds: Iterable[PairRound]) -> None:
        """A polling round was written: each venue's quote (fresh, or its last good one re-marked stale),
        and BEST when any venue answered, exactly as `QuoteCache.publish` writes them."""
        for result in rounds:
            pair = f"{result.token_in}-{result.token_out}"
            for quote in (*result.fresh, *result.stale):
                self._written[(pair, VENUE_KEYS[quote.dex].lower())] = quote.ts
            if result.fresh:
                self._written[(pair, "best")] = choose_best(result.fresh).best.ts

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        now = self.clock()
        family = GaugeMetricFamily(
            "engine_quote_age_seconds",
            "Age of the quote cached for a pair on a venue (raydium, meteora, best); grows while a venue fails",
            labels=["pair", "venue"],
        )
        for (pair, venue), ts in sorted(self._written.copy().items()):  # copy: the writer runs meanwhile
            family.add_metric([pair, venue], max(0.0, now - ts))
        yield family
