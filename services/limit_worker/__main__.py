"""`python -m services.limit_worker`: triggers resting limit orders on BEST price ticks, and expires them.

Housekeeping (expiries, hand-offs a dead worker left behind) sleeps until its next deadline, woken early by
placements that bring one forward (shared/store/doorbell.py).

Any number of replicas may run: taking crossed orders is one atomic script per tick, and every hand-over
or expiry is a claim that only one of them can win.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from loguru import logger
from redis.asyncio import Redis

from shared import redis_keys
from shared.observability.orders import OrderOutcomes
from shared.observability.probes import Heartbeat, ServiceProbes
from shared.observability.redis_gauges import RedisGauges, resting_limit_orders
from shared.outage_log import OutageLog
from shared.redis_client import MAX_BLOCK_S, redis_client
from shared.service import keep_running, run_service, unless_stopped
from shared.settings import Settings
from shared.store.doorbell import Doorbell
from shared.store.expiries import ExpirySweeper
from shared.store.limit_book import LimitBook
from shared.store.order_store import OrderStore

#: A hand-off older than this was left by a worker that died mid-way; recover it.
STRANDED_AFTER_MS = 5_000
#: How long a read waits for ticks (they come every QUOTE_INTERVAL_MS): the loop's heartbeat if they stop.
TICKS_BLOCK_MS = int(MAX_BLOCK_S * 1000)


StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


def latest_per_pair(entries: StreamEntries) -> dict[str, Decimal]:
    """Only the newest tick of each pair in a batch matters: prices are levels, not deltas."""
    latest: dict[str, Decimal] = {}
    for _entry_id, fields in entries:
        latest[fields[b"pair"].decode()] = Decimal(fields[b"price"].decode())
    return latest


async def follow_ticks(
    book: LimitBook, redis: Redis, stop: asyncio.Event, outcomes: OrderOutcomes, alive: Heartbeat
) -> None:
    last_id: bytes | str = "$"

    async def take_crossed_orders() -> None:
        nonlocal last_id
        read = redis.xread({redis_keys.TICKS_STREAM: last_id}, count=1000, block=TICKS_BLOCK_MS)
        batches = await unless_stopped(read, stop)
        assert isinstance(batches, list)  # RESP2 (how redis_client connects): [[stream, entries], ...]
        for _stream, entries in batches:
            last_id = entries[-1][0]
            latest = latest_per_pair(entries)
            # Every pair's check at once: on the auto-pipelining client, one round trip for the whole tick.
            crossed = await asyncio.gather(*(book.take_crossed(pair, price) for pair, price in latest.items()))
            for (pair, price), members in zip(latest.items(), crossed, strict=True):
                if members:
                    handed = await book.hand_over_at(members, price)
                    outcomes.triggered("limit", handed)
                    logger.info("{} at {}: triggered {} limit orders", pair, price, handed)

    # xread blocks for new ticks: no rest between rounds, only a back-off while Redis is away.
    outage = OutageLog("tick loop lost Redis")
    await keep_running(take_crossed_orders, alive=alive, stop=stop, outage=outage, back_off_s=0.5)


async def housekeeping(
    book: LimitBook,
    sweeper: ExpirySweeper,
    doorbell: Doorbell,
    stop: asyncio.Event,
    outcomes: OrderOutcomes,
    alive: Heartbeat,
) -> None:
    async def expire_recover_and_wait() -> None:
        expired = await sweeper.sweep(on_expired=outcomes.ended)
        if expired:
            logger.info("expired {} limit orders", expired)
        if stranded := await book.stranded(STRANDED_AFTER_MS):
            logger.warning("recovering {} limit orders stranded between trigger and execution", len(stranded))
            outcomes.triggered("limit", await book.hand_over_at(stranded, None))
        await doorbell.wait(await book.next_chore_ms(STRANDED_AFTER_MS), stop)

    outage = OutageLog("housekeeping lost Redis")
    await keep_running(expire_recover_and_wait, alive=alive, stop=stop, outage=outage, back_off_s=0.5)


async def run(settings: Settings, stop: asyncio.Event, probes: ServiceProbes) -> None:
    outcomes = OrderOutcomes(probes.registry)
    gauges = RedisGauges(settings, [resting_limit_orders(settings.pairs)])
    probes.registry.register(gauges)
    ticks, chores = probes.health.heartbeat("ticks"), probes.health.heartbeat("housekeeping")
    redis = redis_client(settings, auto_pipeline=True)
    store = OrderStore(redis, retention_s=settings.order_retention_s, idempotency_ttl_s=settings.idempotency_ttl_s)
    book = LimitBook(redis, store)
    sweeper = ExpirySweeper(redis, store, redis_keys.LIMIT_EXPIRIES)
    logger.info("watching {} for limit orders", redis_keys.TICKS_STREAM)
    await asyncio.gather(
        follow_ticks(book, redis, stop, outcomes, ticks),
        housekeeping(book, sweeper, Doorbell(redis, redis_keys.LIMIT_DOORBELL), stop, outcomes, chores),
    )
    await redis.aclose()
    gauges.close()
    logger.info("stopped")


def main() -> None:
    run_service("limit-worker", run)


if __name__ == "__main__":
    main()
