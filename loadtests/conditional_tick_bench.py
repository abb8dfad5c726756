"""What a price tick costs the conditional book with 100,000 stops and 100,000 trailing stops resting (a
benchmark, not a test).

    uv run python loadtests/conditional_tick_bench.py --redis redis://127.0.0.1:6379/15 2>/dev/null

FLUSHES the Redis database it is given. It rests the orders on SOL-USDC through the API's own order-creating
script: stops from 99.0 to 99.6 (below the market at 100, above every trailing level), trailing stops across
six widths (1 % to 20 %), armed by a first tick at 100. Then it times, with the worker's own code
(`ConditionalBook.apply_ticks`, one tick per call, as a worker keeping up does): ticks that cross nothing
(prices within 0.3 % below 100; right after the bulk placement, and again once Redis has settled), ticks that
cross 1, 100 and 10,000 stops (to the last one handed over to execution), and new highs (each one moves every
trailing stop's level). Figures are milliseconds as the worker sees them: the Redis round trip included.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from decimal import Decimal

from redis.asyncio import Redis

from loadtests.machine import calibration_ms
from shared import redis_keys
from shared.logging import setup_logging
from shared.redis_client import redis_client
from shared.service import new_event_loop
from shared.settings import Settings
from shared.store.conditional_book import ConditionalBook, trail_state
from tests.support.orders import make_store, place_conditional_order
from tests.support.ticks import TickIds

PAIR = "SOL-USDC"
STOP_BASE = Decimal("99")
STOP_STEP = Decimal("0.000006")
TRAIL_WIDTHS_BPS = (100, 200, 300, 500, 1000, 2000)


async def rest_orders(redis: Redis, stops: int, trailing: int, concurrency: int = 64) -> list:
    store = make_store(redis)
    gate = asyncio.Semaphore(concurrency)

    async def stop(i: int) -> None:
        async with gate:
            await place_conditional_order(store, "stop", stopPrice=str(STOP_BASE + i * STOP_STEP))

    async def trail(i: int):
        async with gate:
            width = TRAIL_WIDTHS_BPS[i % len(TRAIL_WIDTHS_BPS)]
            return await place_conditional_order(store, "trailing_stop", trailBps=width)

    await asyncio.gather(*(stop(i) for i in range(stops)))
    return list(await asyncio.gather(*(trail(i) for i in range(trailing))))


class Ticker:
    def __init__(self, book: ConditionalBook) -> None:
        self.book = book
        self.ids = TickIds()

    async def timed(self, price: Decimal) -> tuple[float, int]:
        """(ms from the tick to the last fired order handed over, orders handed over)"""
        started = time.perf_counter()
        taken = await self.book.apply_ticks(PAIR, [(self.ids.next(), str(price))])
        handed = await self.book.hand_over_taken(taken) if taken else []
        return (time.perf_counter() - started) * 1000, len(handed)


async def script_us(redis: Redis) -> float:
    """Mean time Redis spent in the book's script per call since the last CONFIG RESETSTAT."""
    stats = (await redis.info("commandstats")).get("cmdstat_evalsha", {})
    return float(stats.get("usec_per_call", 0))


def summary(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{label}: median {statistics.median(samples):.3f} ms, p99 {p99:.3f} ms, max {ordered[-1]:.3f} ms"


async def main(args: argparse.Namespace) -> None:
    setup_logging("limit-worker", Settings(log_json=True))
    print(f"machine: calibration {calibration_ms():.0f} ms (lower = faster; compare runs only at similar values)")
    redis = redis_client(args.redis)
    await redis.flushdb()
    started = time.perf_counter()
    trailing = await rest_orders(redis, args.stops, args.trailing)
    print(f"rested {args.stops} stops and {args.trailing} trailing stops in {time.perf_counter() - started:.1f}s")
    # The orders are accepted as a one-partition engine accepts them: all in partition 0, the book timed here.
    book = ConditionalBook(redis, make_store(redis), partition=0)
    ticker = Ticker(book)
    arming, _ = await ticker.timed(Decimal(100))
    print(f"first tick, arming {args.trailing} trailing stops (once in their lives): {arming:.0f} ms")

    rng = random.Random(7)

    async def quiet_ticks(label: str) -> None:
        await redis.config_resetstat()
        quiet = [(await ticker.timed(Decimal(100) * Decimal(1 + rng.uniform(-0.003, 0)).quantize(Decimal("0.0001"))))
                 for _ in range(args.ticks)]  # fmt: skip
        assert all(handed == 0 for _, handed in quiet)
        print(summary(f"tick crossing none, {label} ({args.ticks})", [ms for ms, _ in quiet]))
        print(f"  inside Redis: {await script_us(redis):.0f} µs per tick (the rest is the round trip and the client)")

    await quiet_ticks("right after the bulk placement")
    # Right after the bulk placement Redis is busier inside the same script (most likely growing its keyspace's
    # hash table for 200,000 new orders and rehashing it step by step); a book that fills over minutes never is.
    await asyncio.sleep(args.settle_s)
    await quiet_ticks(f"{args.settle_s:g} s later")

    top = STOP_BASE + (args.stops - 1) * STOP_STEP
    crossed_so_far = 0
    for wanted in (1, 100, 10_000):
        price = top - (crossed_so_far + wanted - 1) * STOP_STEP  # stops fire from the highest down
        elapsed, handed = await ticker.timed(price)
        crossed_so_far += handed
        per_order = elapsed / max(handed, 1)
        print(f"tick crossing {wanted:>6}: {elapsed:8.1f} ms to hand over {handed} ({per_order:.3f} ms/order)")

    await redis.config_resetstat()
    highs = [await ticker.timed(Decimal(100) + Decimal(i) / 100) for i in range(1, args.ticks + 1)]
    assert all(handed == 0 for _, handed in highs)
    widest = next(order for order in trailing if order.trail_bps == max(TRAIL_WIDTHS_BPS))
    sample = await make_store(redis).load(widest.order_id)
    moved = (await trail_state(redis, sample)).view()
    print(summary(f"new high, moving every trailing level ({args.ticks})", [ms for ms, _ in highs]))
    print(f"  inside Redis: {await script_us(redis):.0f} µs per tick")
    records = await redis.zcard(redis_keys.cond_highs(PAIR, book.partition))
    print(f"  a trailing stop after them: {moved}; records kept: {records}")
    await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--stops", type=int, default=100_000)
    parser.add_argument("--trailing", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--settle-s", type=float, default=20)
    new_event_loop().run_until_complete(main(parser.parse_args()))
