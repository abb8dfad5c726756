"""What a price tick costs the limit worker with 100,000 resting orders (a benchmark, not a test).

    uv run python loadtests/limit_tick_bench.py --redis redis://127.0.0.1:6379/15

FLUSHES the Redis database it is given. It rests N limit orders on SOL-USDC through the API's own
order-creating script (limits 100.000, 100.001, … one per 0.001 USDC), then times, with the limit
worker's own code (`LimitBook.take_crossed` + `hand_over`), ticks that cross nothing, 1, 100 and
10,000 orders: from the tick to the last crossed order handed over to execution. It runs as the worker
does: the engine's Redis client, uvloop, and its log lines (JSON, to stderr: redirect it).
"""

from __future__ import annotations

import argparse
import asyncio
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
from shared.store.limit_book import LimitBook
from tests.support.orders import make_store, place_limit_order

PAIR = "SOL-USDC"
BASE = Decimal("100")
STEP = Decimal("0.001")


async def rest_orders(redis: Redis, count: int, concurrency: int = 64) -> None:
    store = make_store(redis)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await place_limit_order(store, str(BASE + i * STEP))

    await asyncio.gather(*(one(i) for i in range(count)))


async def timed_tick(book: LimitBook, price: Decimal) -> tuple[float, int, float]:
    """(ms from the tick to the last hand-over, orders handed over, ms of this process's CPU meanwhile)"""
    started, cpu = time.perf_counter(), time.process_time()
    members = await book.take_crossed(PAIR, price)
    handed = await book.hand_over_at(members, price)
    return (time.perf_counter() - started) * 1000, handed, (time.process_time() - cpu) * 1000


async def main(args: argparse.Namespace) -> None:
    setup_logging("limit-worker", Settings(log_json=True))
    print(f"machine: calibration {calibration_ms():.0f} ms (lower = faster; compare runs only at similar values)")
    redis = redis_client(args.redis)
    await redis.flushdb()
    started = time.perf_counter()
    await rest_orders(redis, args.orders)
    # The orders are accepted as a one-partition engine accepts them: all in partition 0, the book timed here.
    book = LimitBook(redis, make_store(redis), partition=0)
    print(
        f"rested {args.orders} limit orders in {time.perf_counter() - started:.1f}s; "
        f"{await redis.zcard(redis_keys.limit_buckets(PAIR, book.partition))} buckets"
    )
    idle = [(await timed_tick(book, BASE - 1))[0] for _ in range(200)]
    print(f"tick crossing none:  median {statistics.median(idle):.3f} ms, p99 {sorted(idle)[197]:.3f} ms")
    crossed_so_far = 0
    for wanted in (1, 100, 10_000):
        price = BASE + (crossed_so_far + wanted - 1) * STEP
        elapsed, handed, cpu = await timed_tick(book, price)
        crossed_so_far += handed
        print(
            f"tick crossing {wanted:>6}: {elapsed:8.1f} ms to hand over {handed} ({elapsed / handed:.3f} ms/order, "
            f"{cpu:.1f} ms of the worker's CPU)"
        )
    await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--orders", type=int, default=100_000)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
