"""`python -m services.quote_stream`: polls both venues for every configured pair and caches the quotes."""

from __future__ import annotations

import asyncio
import time

from loguru import logger
from prometheus_client import Counter, Histogram

from shared.domain import tokens
from shared.observability.probes import ServiceProbes
from shared.observability.quote_ages import QuoteAges
from shared.outage_log import OutageLog
from shared.quote_cache import QuoteCache, QuotePoller
from shared.redis_client import redis_client
from shared.service import keep_running, run_service
from shared.settings import Settings
from shared.venue_events import VenueEventPublisher
from shared.venues.base import Dex, Venue
from shared.venues.ledger import RedisLedger
from shared.venues.ledger import retention_s as ledger_retention_s
from shared.venues.simulated import SimulatedVenue, load_sim_config


class QuoteStreamMetrics:
    def __init__(self, probes: ServiceProbes) -> None:
        registry = probes.registry
        self.ages = QuoteAges()
        registry.register(self.ages)
        self.rounds = Histogram(
            "engine_quote_round_seconds",
            "One polling round: every pair quoted on both venues, then written to Redis",
            buckets=(0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5),
            registry=registry,
        )
        self.stale = Counter(
            "engine_quote_failures_total",
            "Venue quotes that failed in a round (the venue's last good quote stays cached, marked stale)",
            ["venue"],
            registry=registry,
        )
        self.venue_events = Counter(
            "engine_venue_events_published_total",
            "Simulated venue events published on stream:{chain}:venue-events",
            ["kind"],
            registry=registry,
        )


async def run(settings: Settings, stop: asyncio.Event, probes: ServiceProbes) -> None:
    metrics = QuoteStreamMetrics(probes)
    alive = probes.health.heartbeat(
        "quotes", stale_after_s=max(settings.health_stale_after_s, settings.quote_interval_ms / 100)
    )
    redis = redis_client(settings)
    sim = await load_sim_config(redis, settings)
    ledger = RedisLedger(redis, ledger_retention_s(settings.order_retention_s))
    venues: list[Venue] = [SimulatedVenue(dex, sim, ledger) for dex in Dex]
    pairs = [(a, b) for a, b in settings.pairs if a in tokens.TOKENS and b in tokens.TOKENS and a != b]
    poller = QuotePoller(venues, QuoteCache(redis), pairs, settings.quote_reference_usd)
    launches = VenueEventPublisher(redis, sim)
    logger.info("streaming {} pairs every {} ms (seed {})", len(pairs), settings.quote_interval_ms, sim.seed)
    rounds = 0

    async def quote_and_publish_launches() -> None:
        nonlocal rounds
        started = time.monotonic()
        written = await poller.poll_once()
        metrics.ages.record(written)
        for result in written:
            for quote in result.stale:
                metrics.stale.labels(quote.dex.value).inc()
        metrics.rounds.observe(time.monotonic() - started)
        for event in await launches.publish_due(time.time()):
            metrics.venue_events.labels(event.kind).inc()
            logger.info("venue event {} {}: liquidity ${}", event.kind, event.event_id, event.liquidity_usd)
        rounds += 1
        if rounds % 120 == 1:
            logger.info("round {}: {} pairs cached", rounds, len(pairs))

    await keep_running(
        quote_and_publish_launches,
        alive=alive,
        stop=stop,
        outage=OutageLog("could not write quotes"),
        period_s=settings.quote_interval_ms / 1000,
    )
    await redis.aclose()
    logger.info("stopped")


def main() -> None:
    run_service("quote-stream", run)


if __name__ == "__main__":
    main()
