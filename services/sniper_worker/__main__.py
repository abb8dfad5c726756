"""`python -m services.sniper_worker`: fires resting sniper orders on venue events, and expires them.

Events come from `stream:{chain}:venue-events`; the worker resumes after the last event acted on. A sweep fires
orders whose condition already holds (placed after their event, or missed while down): at start-up, when an
order is placed, and a grace after each of the launch schedule's moments; housekeeping sleeps in between
(shared/store/doorbell.py).
Any number of replicas may run: every take is one atomic script, every hand-over a claim.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from math import ceil

from loguru import logger
from prometheus_client import Counter
from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.partitions import all_partitions, per_partition
from shared.observability.orders import OrderOutcomes
from shared.observability.probes import Heartbeat, ServiceProbes
from shared.observability.redis_gauges import RedisGauges, armed_sniper_orders
from shared.outage_log import OutageLog
from shared.redis_client import MAX_BLOCK_S, redis_client
from shared.service import keep_running, run_service, unless_stopped
from shared.settings import Settings
from shared.store.doorbell import Doorbell, earliest
from shared.store.expiries import ExpirySweeper
from shared.store.order_store import OrderStore
from shared.store.sniper_book import SniperBook
from shared.venues.launches import next_moment_after
from shared.venues.simulated import SimConfig, load_sim_config

STRANDED_AFTER_MS = 5_000
#: A moment of the launch schedule is swept this long after it comes: its venue event (the quote stream
#: publishes it within a polling round) normally fires the orders first, with the event as their cause, and
#: the sweep only catches what no event fired (the quote stream down, the event trimmed).
MOMENT_GRACE_S = 2.0
#: How long a read waits for venue events (rare): the loop's heartbeat while none come.
EVENTS_BLOCK_MS = int(MAX_BLOCK_S * 1000)


class SniperMetrics:
    def __init__(self, probes: ServiceProbes) -> None:
        self.outcomes = OrderOutcomes(probes.registry)
        self.venue_events = Counter(
            "engine_venue_events_handled_total",
            "Venue events the sniper worker acted on, by kind",
            ["kind"],
            registry=probes.registry,
        )


async def follow_venue_events(
    books: Sequence[SniperBook], redis: Redis, stop: asyncio.Event, metrics: SniperMetrics, alive: Heartbeat
) -> None:
    saved = await redis.get(redis_keys.SNIPER_EVENTS_CURSOR) or b"0"
    cursor = saved.decode() if isinstance(saved, bytes) else saved

    async def fire_on(fields: dict[bytes, bytes]) -> None:
        fired = sum(await asyncio.gather(*(book.on_venue_event(fields) for book in books)))
        metrics.outcomes.triggered("sniper", fired)
        metrics.venue_events.labels(fields[b"kind"].decode()).inc()
        logger.info(
            "venue event {} {}: fired {} sniper orders", fields[b"kind"].decode(), fields[b"id"].decode(), fired
        )

    async def fire_on_new_events() -> None:
        nonlocal cursor
        read = redis.xread({redis_keys.VENUE_EVENTS_STREAM: cursor}, count=100, block=EVENTS_BLOCK_MS)
        batches = await unless_stopped(read, stop)
        assert isinstance(batches, list)  # RESP2 (how redis_client connects): [[stream, entries], ...]
        for _stream, entries in batches:
            for entry_id, fields in entries:
                await fire_on(fields)
                cursor = entry_id.decode()
            await redis.set(redis_keys.SNIPER_EVENTS_CURSOR, cursor)

    # xread blocks for new events: no rest between rounds, only a back-off while Redis is away.
    outage = OutageLog("venue-event loop lost Redis")
    await keep_running(fire_on_new_events, alive=alive, stop=stop, outage=outage, back_off_s=0.5)


async def housekeeping(
    book: SniperBook,
    sweeper: ExpirySweeper,
    doorbell: Doorbell,
    sim: SimConfig,
    stop: asyncio.Event,
    metrics: SniperMetrics,
    alive: Heartbeat,
) -> None:
    outcomes = metrics.outcomes
    # Conditions are swept at start-up (orders placed while no worker ran), on a ring (an order was placed),
    # MOMENT_GRACE_S after each of the launch schedule's moments, and after a round that failed before
    # sweeping them.
    conditions_due = True
    swept_at = 0.0

    async def expire_fire_recover_and_wait() -> None:
        nonlocal conditions_due, swept_at
        if expired := await sweeper.sweep(on_expired=outcomes.ended):
            logger.info("expired {} sniper orders", expired)
        now = time.time()
        moment = next_moment_after(sim, swept_at - MOMENT_GRACE_S)
        if conditions_due or (moment is not None and moment + MOMENT_GRACE_S <= now):
            if fired := await book.sweep(sim, now):
                outcomes.triggered("sniper", fired)
                logger.info("fired {} sniper orders whose condition already held", fired)
            conditions_due, swept_at = False, now
            moment = next_moment_after(sim, now - MOMENT_GRACE_S)
        if stranded := await book.stranded(STRANDED_AFTER_MS):
            logger.warning("recovering {} sniper orders stranded before execution", len(stranded))
            outcomes.triggered("sniper", await book.fire(stranded, {"kind": "recovered"}))
        sweep_at = None if moment is None else ceil((moment + MOMENT_GRACE_S) * 1000)
        due = earliest(await book.next_chore_ms(STRANDED_AFTER_MS), sweep_at)
        conditions_due = True  # a wait that fails may have taken a ring with it
        conditions_due = await doorbell.wait(due, stop)

    outage = OutageLog("housekeeping lost Redis")
    await keep_running(expire_fire_recover_and_wait, alive=alive, stop=stop, outage=outage, back_off_s=0.5)


async def run(settings: Settings, stop: asyncio.Event, probes: ServiceProbes) -> None:
    metrics = SniperMetrics(probes)
    gauges = RedisGauges(settings, [armed_sniper_orders(settings.partitions)])
    probes.registry.register(gauges)
    redis = redis_client(settings)
    sim = await load_sim_config(redis, settings)
    store = OrderStore.from_settings(redis, settings)
    books = [SniperBook(redis, store, p) for p in all_partitions(settings.partitions)]

    def chores(book: SniperBook) -> Awaitable[None]:
        p = book.partition
        sweeper, bell = ExpirySweeper(redis, store, book.expiries_key), Doorbell(redis, redis_keys.sniper_doorbell(p))
        alive = probes.health.heartbeat(per_partition("housekeeping", p))
        return housekeeping(book, sweeper, bell, sim, stop, metrics, alive)

    logger.info("watching {} for sniper orders", redis_keys.VENUE_EVENTS_STREAM)
    # One housekeeping loop per partition: each blocks on its own doorbell (one slot per BLPOP on a cluster).
    await asyncio.gather(
        follow_venue_events(books, redis, stop, metrics, probes.health.heartbeat("venue-events")),
        *(chores(book) for book in books),
    )
    await redis.aclose()
    gauges.close()
    logger.info("stopped")


def main() -> None:
    run_service("sniper-worker", run)


if __name__ == "__main__":
    main()
