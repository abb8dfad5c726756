"""`python -m services.sniper_worker`: fires resting sniper orders on venue events, and expires them.

Events come from `stream:venue-events`; the worker resumes after the last event acted on, and a sweep
every second fires orders whose condition already holds (placed after their event, or missed while down).
Any number of replicas may run: every take is one atomic script, every hand-over a claim.
"""

from __future__ import annotations

import asyncio
import time

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import redis_keys
from shared.redis_client import redis_client
from shared.service import pause, run_service
from shared.settings import Settings
from shared.store.expiries import ExpirySweeper
from shared.store.order_store import OrderStore
from shared.store.sniper_book import SniperBook
from shared.venues.simulated import SimConfig, load_sim_config

SWEEP_PERIOD_S = 0.2
CONDITION_SWEEP_EVERY = 5  # sweeps, i.e. once a second
STRANDED_AFTER_MS = 5_000


async def follow_venue_events(book: SniperBook, redis: Redis, stop: asyncio.Event) -> None:
    cursor = (await redis.get(redis_keys.SNIPER_EVENTS_CURSOR) or b"0").decode()
    while not stop.is_set():
        try:
            batches = await redis.xread({redis_keys.VENUE_EVENTS_STREAM: cursor}, count=100, block=500)
            for _stream, entries in batches:
                for entry_id, fields in entries:
                    fired = await book.on_venue_event(fields)
                    logger.info(
                        "venue event {} {}: fired {} sniper orders",
                        fields[b"kind"].decode(),
                        fields[b"id"].decode(),
                        fired,
                    )
                    cursor = entry_id.decode()
                await redis.set(redis_keys.SNIPER_EVENTS_CURSOR, cursor)
        except (RedisError, OSError) as exc:
            logger.warning("venue-event loop lost Redis ({}); retrying", exc)
            await asyncio.sleep(0.5)


async def housekeeping(book: SniperBook, sweeper: ExpirySweeper, sim: SimConfig, stop: asyncio.Event) -> None:
    rounds = 0
    while not stop.is_set():
        try:
            if expired := await sweeper.sweep():
                logger.info("expired {} sniper orders", expired)
            rounds += 1
            if rounds % CONDITION_SWEEP_EVERY == 0:
                if fired := await book.sweep(sim, time.time()):
                    logger.info("fired {} sniper orders whose condition already held", fired)
                if stranded := await book.stranded(STRANDED_AFTER_MS):
                    logger.warning("recovering {} sniper orders stranded before execution", len(stranded))
                    await book.fire(stranded, {"kind": "recovered"})
        except (RedisError, OSError) as exc:
            logger.warning("housekeeping lost Redis ({}); retrying", exc)
        await pause(stop, SWEEP_PERIOD_S)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    redis = redis_client(settings.redis_url)
    sim = await load_sim_config(redis, settings)
    store = OrderStore(redis, retention_s=settings.order_retention_s, idempotency_ttl_s=settings.idempotency_ttl_s)
    book = SniperBook(redis, store)
    sweeper = ExpirySweeper(redis, store, redis_keys.SNIPER_EXPIRIES)
    logger.info("watching {} for sniper orders", redis_keys.VENUE_EVENTS_STREAM)
    await asyncio.gather(follow_venue_events(book, redis, stop), housekeeping(book, sweeper, sim, stop))
    await redis.aclose()
    logger.info("stopped")


def main() -> None:
    run_service("sniper-worker", run)


if __name__ == "__main__":
    main()
