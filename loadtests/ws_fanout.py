"""WebSocket fan-out on one API process: many open sockets, a steady event rate, delivery lag per message.

Against a running engine whose API allows this many sockets from one client address:

    WS_MAX_PER_CLIENT=0 make run            # (0 = no per-client socket cap; the default 256 would refuse)
    uv run python loadtests/ws_fanout.py --sockets 5000 --orders-per-s 30 --duration 40

It opens `--sockets` `/ws?userId=` sockets (one user each, opened in batches), then places market orders at
a fixed open-loop rate, each for one of those users in turn, so every event of every order reaches exactly
one socket (a market order makes about five events: 30 orders/s ≈ 150 events/s). Each socket checks that
its events arrive gapless per order and measures lag = arrival time - the event's `timestamp` (stamped by
the service that made the event, so the lag covers Redis, the API's stream reader and the socket send).
It prints the lag percentiles, events delivered and lost (an order whose terminal event never arrived,
or a seq gap), and the API process's RSS (found by its command line) before, at peak and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections import defaultdict
from datetime import datetime

import httpx
import orjson
import psutil
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

TERMINAL = {"confirmed", "failed", "cancelled", "expired"}
#: Sockets opened at once: the API accepts a burst of handshakes, not thousands in one go.
OPEN_BATCH = 250
#: After the last order, how long to wait for terminal events still in flight.
DRAIN_TIMEOUT_S = 30.0


def api_process(api_url: str) -> psutil.Process | None:
    """The process listening on the API's port (not just any API: several engines may share the machine)."""
    port = httpx.URL(api_url).port or 80
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            return psutil.Process(connection.pid)
    return None


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


class Tally:
    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self.seqs: dict[str, list[int]] = defaultdict(list)
        self.terminal: set[str] = set()
        self.closed_early = 0

    def record(self, raw: bytes | str) -> None:
        event = orjson.loads(raw)
        if event.get("type") == "error":
            return
        stamped = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
        self.lags_ms.append((time.time() - stamped) * 1000)
        self.seqs[event["orderId"]].append(event["seq"])
        if event["status"] in TERMINAL:
            self.terminal.add(event["orderId"])


async def hold_socket(url: str, tally: Tally, opened: asyncio.Event, stop: asyncio.Event) -> None:
    try:
        async with connect(url, open_timeout=30, max_queue=None) as socket:
            opened.set()
            reader = asyncio.ensure_future(_read(socket, tally))
            await stop.wait()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    except (OSError, ConnectionClosed, TimeoutError):
        tally.closed_early += 1
        opened.set()


async def _read(socket, tally: Tally) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in socket:
            tally.record(raw)
    tally.closed_early += 1


async def place_orders(api: str, users: list[str], rate: float, duration_s: float) -> list[str]:
    order_ids: list[str] = []
    failures = 0
    async with httpx.AsyncClient(base_url=api, timeout=30, limits=httpx.Limits(max_connections=64)) as client:

        async def one(user: str, i: int) -> None:
            nonlocal failures
            body = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": f"{1 + (i % 50) / 100:.2f}", "userId": user}
            body["slippageBps"] = 500
            try:
                response = await client.post("/api/orders/execute", json=body)
                response.raise_for_status()
                order_ids.append(response.json()["orderId"])
            except httpx.HTTPError:
                failures += 1

        start = time.monotonic()
        pending = []
        count = int(rate * duration_s)
        for i in range(count):
            # Open loop: each order leaves at its scheduled time whatever the earlier ones are doing.
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            pending.append(asyncio.ensure_future(one(users[i % len(users)], i)))
        await asyncio.gather(*pending)
    if failures:
        print(f"submissions that failed: {failures}")
    return order_ids


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--orders-per-s", type=float, default=30.0)
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of order placement")
    args = parser.parse_args()

    api = api_process(args.api)
    rss = lambda: api.memory_info().rss / 2**20 if api else float("nan")  # noqa: E731
    rss_before = rss()
    ws_base = args.api.replace("http", "ws", 1)
    run_tag = f"fan{int(time.time())}"
    users = [f"{run_tag}-{i}" for i in range(args.sockets)]
    tally, stop = Tally(), asyncio.Event()
    holders = []
    started = time.monotonic()
    for first in range(0, len(users), OPEN_BATCH):
        batch = [asyncio.Event() for _ in users[first : first + OPEN_BATCH]]
        for user, opened in zip(users[first : first + OPEN_BATCH], batch, strict=True):
            holders.append(asyncio.ensure_future(hold_socket(f"{ws_base}/ws?userId={user}", tally, opened, stop)))
        await asyncio.gather(*(opened.wait() for opened in batch))
    print(f"{len(users)} sockets opened in {time.monotonic() - started:.1f} s ({tally.closed_early} refused)")

    peak_rss = rss()
    sampler_stop = asyncio.Event()

    async def sample_rss() -> None:
        nonlocal peak_rss
        while not sampler_stop.is_set():
            peak_rss = max(peak_rss, rss())
            await asyncio.sleep(0.5)

    sampler = asyncio.ensure_future(sample_rss())
    order_ids = await place_orders(args.api, users, args.orders_per_s, args.duration)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline and not set(order_ids) <= tally.terminal:
        await asyncio.sleep(0.2)
    sampler_stop.set()
    await sampler
    stop.set()
    await asyncio.gather(*holders)

    gaps = sum(1 for seqs in tally.seqs.values() if sorted(seqs) != list(range(1, max(seqs) + 1)))
    missing = len(set(order_ids) - tally.terminal)
    lags = sorted(tally.lags_ms)
    print(f"orders placed: {len(order_ids)} at {args.orders_per_s}/s; events delivered: {len(lags)}")
    print(
        f"delivery lag ms: p50 {percentile(lags, 0.5):.1f}  p95 {percentile(lags, 0.95):.1f}  "
        f"p99 {percentile(lags, 0.99):.1f}  max {lags[-1] if lags else float('nan'):.1f}  "
        f"mean {statistics.fmean(lags) if lags else float('nan'):.1f}"
    )
    print(f"lost: {missing} orders without their terminal event, {gaps} with a seq gap; {tally.closed_early} dropped")
    print(f"API RSS MiB: before {rss_before:.0f}, peak {peak_rss:.0f}, after {rss():.0f}")


if __name__ == "__main__":
    asyncio.run(main())
