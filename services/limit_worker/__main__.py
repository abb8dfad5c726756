"""`python -m services.limit_worker`: the price-trigger worker. Triggers resting limit and conditional
(stop, trailing stop, OCO) orders on BEST price ticks, and expires them.

Limit orders act on each batch's latest price per pair; conditional orders apply every tick in order, from a
cursor that survives restarts, since a trailing stop's high may be any tick (docs/conditional-orders.md).

Housekeeping (expiries, hand-offs a dead worker left behind) sleeps until its next deadline, woken early by
placements that bring one forward (shared/store/doorbell.py).

Any number of replicas may run: taking crossed orders is one atomic script per tick (per pair and batch for
conditional orders, which skips ticks already applied), and every hand-over or expiry is a claim that only one
of them can win. Every partition has its own books (docs/sharding.md): each tick is taken in all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal

from loguru import logger
from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.partitions import all_partitions, per_partition
from shared.observability.conditional import ConditionalMetrics
from shared.observability.orders import OrderOutcomes
from shared.observability.probes import Heartbeat, ServiceProbes
from shared.observability.redis_gauges import RedisGauges, resting_conditional_orders, resting_limit_orders
from shared.outage_log import OutageLog
from shared.redis_client import MAX_BLOCK_S, redis_client
from shared.service import keep_running, run_service, unless_stopped
from shared.settings import Settings
from shared.store.conditional_book import ConditionalBook, ticks_per_pair
from shared.store.doorbell import Doorbell
from shared.store.expiries import ExpirySweeper
from shared.store.limit_book import LimitBook
from shared.store.order_store import OrderStore
from shared.store.resting import RestingBook

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
    books: Sequence[LimitBook], redis: Redis, stop: asyncio.Event, outcomes: OrderOutcomes, alive: Heartbeat
) -> None:
    last_id: bytes | str = "$"

    async def take_crossed_orders() -> None:
        nonlocal last_id
        read = redis.xread({redis_keys.TICKS_STREAM: last_id}, count=1000, block=TICKS_BLOCK_MS)
        batches = await unless_stopped(read, stop)
        assert isinstance(batches, list)  # RESP2 (how redis_client connects): [[stream, entries], ...]
        for _stream, entries in batches:
            last_id = entries[-1][0]
            checks = [(book, pair, price) for pair, price in latest_per_pair(entries).items() for book in books]
            # Every pair's check in every partition at once: on the auto-pipelining client, one round trip.
            crossed = await asyncio.gather(*(book.take_crossed(pair, price) for book, pair, price in checks))
            for (book, pair, price), members in zip(checks, crossed, strict=True):
                if members:
                    handed = await book.hand_over_at(members, price)
                    outcomes.triggered("limit", handed)
                    logger.info("{} at {}: triggered {} limit orders", pair, price, handed)

    # xread blocks for new ticks: no rest between rounds, only a back-off while Redis is away.
    outage = OutageLog("tick loop lost Redis")
    await keep_running(take_crossed_orders, alive=alive, stop=stop, outage=outage, back_off_s=0.5)


async def follow_conditional_ticks(
    books: Sequence[ConditionalBook], redis: Redis, stop: asyncio.Event, metrics: ConditionalMetrics, alive: Heartbeat
) -> None:
    cursor = await redis.get(redis_keys.COND_TICKS_CURSOR)
    last_id: bytes | str = cursor if cursor is not None else "$"

    async def apply_ticks() -> None:
        nonlocal last_id
        read = redis.xread({redis_keys.TICKS_STREAM: last_id}, count=1000, block=TICKS_BLOCK_MS)
        batches = await unless_stopped(read, stop)
        assert isinstance(batches, list)  # RESP2 (how redis_client connects): [[stream, entries], ...]
        for _stream, entries in batches:
            applying = [(book, pair, ticks) for pair, ticks in ticks_per_pair(entries).items() for book in books]
            with metrics.timing_ticks(len(entries)):
                fired = await asyncio.gather(*(book.apply_ticks(pair, ticks) for book, pair, ticks in applying))
            for (book, pair, _), taken in zip(applying, fired, strict=True):
                if taken:
                    handed = await book.hand_over_taken(taken)
                    metrics.fired(handed)
                    logger.info("{}: triggered {} conditional orders", pair, len(handed))
            last_id = entries[-1][0]
            await redis.set(redis_keys.COND_TICKS_CURSOR, last_id)

    outage = OutageLog("conditional tick loop lost Redis")
    await keep_running(apply_ticks, alive=alive, stop=stop, outage=outage, back_off_s=0.5)


async def housekeeping(
    kind: str,
    book: RestingBook,
    recover: Callable[[list[str]], Awaitable[None]],
    sweeper: ExpirySweeper,
    doorbell: Doorbell,
    stop: asyncio.Event,
    outcomes: OrderOutcomes,
    alive: Heartbeat,
) -> None:
    """Expire `kind` orders past their deadline and `recover` hand-offs a dead worker left behind."""

    async def expire_recover_and_wait() -> None:
        expired = await sweeper.sweep(on_expired=outcomes.ended)
        if expired:
            logger.info("expired {} {} orders", expired, kind)
        if stranded := await book.stranded(STRANDED_AFTER_MS):
            logger.warning("recovering {} {} orders stranded between trigger and execution", len(stranded), kind)
            await recover(stranded)
        await doorbell.wait(await book.next_chore_ms(STRANDED_AFTER_MS), stop)

    outage = OutageLog(f"{kind} housekeeping lost Redis")
    await keep_running(expire_recover_and_wait, alive=alive, stop=stop, outage=outage, back_off_s=0.5)


async def run(settings: Settings, stop: asyncio.Event, probes: ServiceProbes) -> None:
    outcomes = OrderOutcomes(probes.registry)
    conditional_metrics = ConditionalMetrics(probes.registry, outcomes)
    gauges = RedisGauges(
        settings,
        [
            resting_limit_orders(settings.pairs, settings.partitions),
            resting_conditional_orders(settings.pairs, settings.partitions),
        ],
    )
    probes.registry.register(gauges)
    beat = probes.health.heartbeat
    redis = redis_client(settings, auto_pipeline=True)
    store = OrderStore.from_settings(redis, settings)
    partitions = all_partitions(settings.partitions)
    limits = [LimitBook(redis, store, p) for p in partitions]
    conditionals = [ConditionalBook(redis, store, p) for p in partitions]

    def limit_chores(book: LimitBook) -> Awaitable[None]:
        async def recover(stranded: list[str]) -> None:
            outcomes.triggered("limit", await book.hand_over_at(stranded, None))

        p = book.partition
        sweeper, bell = ExpirySweeper(redis, store, book.expiries_key), Doorbell(redis, redis_keys.limit_doorbell(p))
        return housekeeping(
            "limit", book, recover, sweeper, bell, stop, outcomes, beat(per_partition("housekeeping", p))
        )

    def conditional_chores(book: ConditionalBook) -> Awaitable[None]:
        async def recover(stranded: list[str]) -> None:
            conditional_metrics.fired(await book.recover(stranded))

        p = book.partition
        sweeper, bell = ExpirySweeper(redis, store, book.expiries_key), Doorbell(redis, redis_keys.cond_doorbell(p))
        alive = beat(per_partition("conditional-housekeeping", p))
        return housekeeping("conditional", book, recover, sweeper, bell, stop, outcomes, alive)

    logger.info("watching {} for limit and conditional orders", redis_keys.TICKS_STREAM)
    # Housekeeping blocks on each partition's doorbell: one loop per partition, since on a cluster one BLPOP
    # may name keys of one slot only.
    await asyncio.gather(
        follow_ticks(limits, redis, stop, outcomes, beat("ticks")),
        follow_conditional_ticks(conditionals, redis, stop, conditional_metrics, beat("conditional-ticks")),
        *(limit_chores(book) for book in limits),
        *(conditional_chores(book) for book in conditionals),
    )
    await redis.aclose()
    gauges.close()
    logger.info("stopped")


def main() -> None:
    run_service("limit-worker", run)


if __name__ == "__main__":
    main()
