"""How many orders one execution worker keeps in flight (a benchmark, not a test).

Against a running engine (`make run`, or the compose stack) with default simulated latencies:

    uv run python loadtests/inflight.py --orders 800 --api http://127.0.0.1:8000 --redis redis://127.0.0.1:6379/0

It submits the orders as fast as the API takes them (or, with --direct, places them straight into Redis
with the API's own order-creating script, to measure the worker alone), samples every 20 ms how many
execution messages are taken but not yet acknowledged (dramatiq's per-worker ack sets: exactly the orders
a worker is driving),
waits until every order is terminal, and prints the peak in flight, the completion time and the outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.lifecycle import is_terminal

ACK_SETS = f"{redis_keys.DRAMATIQ_PREFIX}:*:__acks__.*.{redis_keys.EXECUTION_QUEUE}"  # every partition's


async def in_flight(redis: Redis) -> int:
    keys = [key async for key in redis.scan_iter(match=ACK_SETS, count=1000)]
    if not keys:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.scard(key)
        return sum(await pipe.execute())


async def submit_all(api: str, count: int, concurrency: int) -> list[str]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=api, limits=limits, timeout=30) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> str:
            async with gate:
                body = {
                    "tokenIn": "SOL",
                    "tokenOut": "USDC",
                    "amount": f"{1 + (i % 100) / 100:.2f}",
                    "slippageBps": 500,
                }
                response = await client.post("/api/orders/execute", json=body)
                response.raise_for_status()
                return response.json()["orderId"]

        return await asyncio.gather(*(one(i) for i in range(count)))


async def place_directly(redis: Redis, count: int) -> list[str]:
    from tests.support.orders import make_store, place_market_order

    store = make_store(redis)
    orders = []
    for i in range(count):
        orders.append(await place_market_order(store, amount=f"{1 + (i % 100) / 100:.2f}", slippageBps=500))
    return [str(order.order_id) for order in orders]


async def main(args: argparse.Namespace) -> None:
    redis = Redis.from_url(args.redis)
    peak, stop = 0, asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, await in_flight(redis))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    if args.direct:
        order_ids = await place_directly(redis, args.orders)
    else:
        order_ids = await submit_all(args.api, args.orders, args.concurrency)
    submitted = time.perf_counter() - started
    pending = set(order_ids)
    statuses: dict[str, str] = {}
    while pending:
        async with redis.pipeline(transaction=False) as pipe:
            for order_id in pending:
                pipe.hget(redis_keys.order(order_id), "status")
            for order_id, status in zip(list(pending), await pipe.execute(), strict=True):
                if status and is_terminal(status.decode()):
                    statuses[order_id] = status.decode()
                    pending.discard(order_id)
        await asyncio.sleep(0.1)
    finished = time.perf_counter() - started
    stop.set()
    await sampler
    outcome = {s: list(statuses.values()).count(s) for s in sorted(set(statuses.values()))}
    print(f"orders: {args.orders}  submitted in {submitted:.2f}s  all terminal after {finished:.2f}s")
    print(f"peak orders in flight (unacked execution messages): {peak}")
    print(f"outcome: {outcome}")
    await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=800)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--direct", action="store_true", help="bypass the API: measure the worker alone")
    asyncio.run(main(parser.parse_args()))
