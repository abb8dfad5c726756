"""Does throughput grow with execution-worker replicas? Drain a full queue with 1, then 2, ... workers.

Against an engine running without its execution worker (`python -m deploy.local --only api,db-sync`, with
SIM_LATENCY_SCALE=0 SIM_FAILURE_RATE=0 so only CPU limits the drain):

    uv run python loadtests/scale_out.py --api http://127.0.0.1:8000 --orders 6000 --workers 1,2

For each replica count it places `--orders` market orders straight into Redis with the API's own
order-creating script (the queue fills; nobody consumes it yet), starts that many
`python -m services.execution_worker` processes with the API process's environment (same Redis, PostgreSQL
and simulation settings), and times the drain from the first message taken to the last order terminal.
It prints orders/s drained and the CPU ms per order of the workers and of Redis over that window, then
stops the workers with SIGTERM (a graceful shutdown) before the next count. Worker start-up (imports,
connections) happens before the first message is taken, so it is not in the window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlparse

import psutil
from redis.asyncio import Redis

from loadtests.engine_cpu import cpu_seconds, find_engine
from loadtests.inflight import in_flight
from loadtests.machine import CpuTimes, usage_between
from shared.domain.lifecycle import is_terminal
from shared.execution.backlog import read_backlog
from shared.redis_client import redis_client
from shared.redis_keys import order as order_key
from tests.support.orders import make_store, place_market_order

PLACING_CONCURRENCY = 200
POLL_S = 0.05


async def place_orders(redis: Redis, count: int) -> list[str]:
    store = make_store(redis)
    gate = asyncio.Semaphore(PLACING_CONCURRENCY)

    async def one(i: int) -> str:
        async with gate:
            order = await place_market_order(store, amount=f"{1 + (i % 100) / 100:.2f}", slippageBps=500)
            return str(order.order_id)

    return await asyncio.gather(*(one(i) for i in range(count)))


async def count_terminal(redis: Redis, order_ids: list[str]) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for order_id in order_ids:
            pipe.hget(order_key(order_id), "status")
        statuses = await pipe.execute()
    return sum(1 for status in statuses if status and is_terminal(status.decode()))


def start_workers(count: int, env: dict[str, str]) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "services.execution_worker"],
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


async def drain(redis: Redis, replicas: int, orders: int, env: dict[str, str], servers) -> dict[str, float]:
    order_ids = await place_orders(redis, orders)
    workers = start_workers(replicas, env)
    try:
        while (await read_backlog(redis)).ready >= orders:  # nobody has taken anything yet
            await asyncio.sleep(0.005)
        started, machine_before = time.perf_counter(), CpuTimes.read()
        workers_before, servers_before = cpu_of([w.pid for w in workers]), cpu_seconds(servers)
        # Polling the queue and the workers' ack sets is two commands; reading every order's status as often
        # would load Redis and this process more than the drain itself.
        while (await read_backlog(redis)).ready or await in_flight(redis):
            if any(worker.poll() is not None for worker in workers):
                raise SystemExit(f"a worker exited with {[w.poll() for w in workers]}")
            await asyncio.sleep(POLL_S)
        elapsed = time.perf_counter() - started
        if (done := await count_terminal(redis, order_ids)) < orders:
            raise SystemExit(f"queue drained but only {done} of {orders} orders are terminal")
        workers_after, servers_after = cpu_of([w.pid for w in workers]), cpu_seconds(servers)
        busy = usage_between(machine_before, CpuTimes.read())
    finally:
        stop_workers(workers)
    return {
        "replicas": replicas,
        "orders_per_s": orders / elapsed,
        "drain_s": elapsed,
        "worker_cpu_ms_per_order": (workers_after - workers_before) * 1000 / orders,
        "redis_cpu_ms_per_order": (servers_after["redis"] - servers_before["redis"]) * 1000 / orders,
        "machine_busy_pct": busy.get("busy_pct", 0.0),
        "steal_pct": busy.get("steal_pct", 0.0),
    }


async def main(args: argparse.Namespace) -> None:
    engine = find_engine(urlparse(args.api).port or 80)
    if "execution_worker" in engine.services:
        raise SystemExit("the engine runs its own execution worker: start it with --only api,db-sync")
    env = dict(os.environ)
    env.update(psutil.Process(engine.services["api"][0]).environ())
    servers = type(engine)(redis_url=engine.redis_url, servers={"redis": engine.servers["redis"]})
    # Orders are placed 200 at a time: auto-pipelining sends them together, a bounded pool waits.
    redis = redis_client(engine.redis_url, max_connections=16, wait_for_connection_s=30, auto_pipeline=True)
    try:
        for replicas in (int(part) for part in args.workers.split(",")):
            result = await drain(redis, replicas, args.orders, env, servers)
            print(
                f"{result['replicas']} worker(s): {args.orders} orders drained in {result['drain_s']:.2f} s = "
                f"{result['orders_per_s']:.0f} orders/s; CPU ms/order workers {result['worker_cpu_ms_per_order']:.2f}"
                f", redis {result['redis_cpu_ms_per_order']:.2f}; machine {result['machine_busy_pct']:.0f} % busy, "
                f"steal {result['steal_pct']:.1f} %",
                flush=True,
            )
    finally:
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:8000", help="the engine's API (finds its Redis)")
    parser.add_argument("--orders", type=int, default=6000)
    parser.add_argument("--workers", default="1,2", help="replica counts to try, in order")
    asyncio.run(main(parser.parse_args()))
