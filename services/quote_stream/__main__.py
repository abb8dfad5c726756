"""`python -m services.quote_stream`: polls both venues for every configured pair and caches the quotes."""

from __future__ import annotations

import asyncio
import time

from loguru import logger
from redis.exceptions import RedisError

from shared.domain import tokens
from shared.quote_cache import QuoteCache, QuotePoller
from shared.redis_client import redis_client
from shared.service import pause, run_service
from shared.settings import Settings
from shared.venue_events import VenueEventPublisher
from shared.venues.base import Dex
from shared.venues.ledger import RedisLedger
from shared.venues.simulated import SimulatedVenue, load_sim_config


async def run(settings: Settings, stop: asyncio.Event) -> None:
    redis = redis_client(settings.redis_url)
    sim = await load_sim_config(redis, settings)
    ledger = RedisLedger(redis)
    venues = [SimulatedVenue(dex, sim, ledger) for dex in Dex]
    pairs = [(a, b) for a, b in settings.pairs if a in tokens.TOKENS and b in tokens.TOKENS and a != b]
    poller = QuotePoller(venues, QuoteCache(redis), pairs, settings.quote_reference_usd)
    launches = VenueEventPublisher(redis, sim)
    interval = settings.quote_interval_ms / 1000
    logger.info("streaming {} pairs every {} ms (seed {})", len(pairs), settings.quote_interval_ms, sim.seed)
    rounds = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await poller.poll_once()
            for event in await launches.publish_due(time.time()):
                logger.info("venue event {} {}: liquidity ${}", event.kind, event.event_id, event.liquidity_usd)
            rounds += 1
            if rounds % 120 == 1:
                logger.info("round {}: {} pairs cached", rounds, len(pairs))
        except (RedisError, OSError) as exc:
            logger.warning("could not write quotes ({}); retrying", exc)
        remaining = interval - (time.monotonic() - started)
        if remaining > 0:
            await pause(stop, remaining)
    await redis.aclose()
    logger.info("stopped")


def main() -> None:
    run_service("quote-stream", run)


if __name__ == "__main__":
    main()
