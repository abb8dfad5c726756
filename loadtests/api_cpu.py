"""CPU per order of the API process alone: one POST and its events fanned out to a `/ws?userId=` socket.

The end-to-end benchmark (bench.py) runs every service on two shared cores, so the API's share of it moves
with whatever the execution worker and db-sync are doing. This one needs only the API (and its Redis and
PostgreSQL) and stands in for the rest of the engine itself:

    MAX_QUEUE_DEPTH=100000000 API_PORT=8411 python -m deploy.local --only api     # a throwaway engine
    uv run python loadtests/api_cpu.py --api http://127.0.0.1:8411 --rate 250 --duration 20

It offers market orders at a fixed open-loop rate (the raw keep-alive client of bench.py), all for one
user whose socket it holds, and for every accepted order appends `--events-per-order` − 1 more events to
the event stream as the execution worker would (routing, building, submitted, confirmed: same fields, same
size, one XADD each, sent together). Nobody executes the orders: their messages pile up in the execution
queue, hence the large MAX_QUEUE_DEPTH. It prints the API process's CPU per order (user + system, between the end of the
warm-up and the end of the run), the events delivered and their delivery lag, and the API's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psutil
from redis.asyncio import BlockingConnectionPool, Redis
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtests import engine_cpu  # noqa: E402
from loadtests.raw_http import HttpError, RawHttpPool  # noqa: E402

EVENTS_STREAM = "stream:events:{p0}"  # the engine's default: one partition
#: The clientOrderId of the orders placed after the warm-up: their events are the ones counted.
MEASURED = "measured"
STAGES = ("routing", "building", "submitted", "confirmed")
QUOTES = {
    "raydium": {"price": "151.234567", "fee": "0.0025", "amountOut": "150.856481", "latencyMs": 0},
    "meteora": {"price": "151.198765", "fee": "0.002", "amountOut": "150.896367", "latencyMs": 0},
}


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event(order_id: str, seq: int, status: str, client_order_id: str | None) -> bytes:
    event = {
        "type": "status",
        "orderId": order_id,
        "seq": seq,
        "status": status,
        "timestamp": _iso_now(),
        "orderType": "market",
        "attempt": 1,
        "dex": "meteora",
        "quotes": QUOTES if status == "routing" else None,
        "txHash": "5" * 88 if status in ("submitted", "confirmed") else None,
        "executedPrice": "151.198765" if status == "confirmed" else None,
        "amountOut": "150.896367" if status == "confirmed" else None,
        "error": None,
        "clientOrderId": client_order_id,
    }
    return orjson.dumps(event)


def _percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def run(args: argparse.Namespace) -> None:
    port = int(args.api.rsplit(":", 1)[1])
    engine = engine_cpu.find_engine(port)
    api = psutil.Process(engine.services["api"][0])
    redis = Redis.from_pool(BlockingConnectionPool.from_url(engine.redis_url, max_connections=32))
    user = f"apicpu-{int(time.time())}"
    pool = RawHttpPool(args.api)
    lags: list[float] = []
    received = 0
    accepted = measured = failures = 0

    async def listen(socket) -> None:
        nonlocal received
        async for raw in socket:
            message = orjson.loads(raw)
            if message.get("clientOrderId") != MEASURED:
                continue
            stamped = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00")).timestamp()
            lags.append((time.time() - stamped) * 1000)
            received += 1

    async def one(i: int, counted: bool) -> None:
        nonlocal accepted, measured, failures
        body = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": f"{1 + (i % 50) / 100:.2f}", "userId": user}
        if counted:
            body["clientOrderId"] = MEASURED
        try:
            status, answer = await pool.post_json("/api/orders/execute", body)
        except HttpError:
            failures += 1
            return
        if status != 200:
            failures += 1
            return
        accepted += 1
        order_id = answer["orderId"]
        tag = MEASURED if counted else None
        async with redis.pipeline(transaction=False) as pipe:  # one round trip for the client; XADDs for Redis
            for seq, stage in enumerate(STAGES[: args.events_per_order - 1], start=2):
                event = _event(order_id, seq, stage, tag)
                pipe.xadd(EVENTS_STREAM, {"o": order_id, "u": user, "e": event, "s": stage})
            await pipe.execute()
        if counted:
            measured += 1

    url = args.api.replace("http", "ws", 1) + f"/ws?userId={user}"
    async with connect(url, max_size=None, ping_interval=None, compression=None) as socket:
        listener = asyncio.ensure_future(listen(socket))
        total = int(args.rate * (args.warmup + args.duration))
        warm = int(args.rate * args.warmup)
        start = time.monotonic()
        pending = []
        before = None
        for i in range(total):
            await asyncio.sleep(max(0.0, start + i / args.rate - time.monotonic()))
            if i == warm:
                before = engine_cpu.cpu_seconds(engine)
            pending.append(asyncio.ensure_future(one(i, counted=i >= warm)))
        await asyncio.gather(*pending)
        deadline = time.monotonic() + 10
        while received < measured * args.events_per_order and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        after = engine_cpu.cpu_seconds(engine)
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    await pool.close()
    await redis.aclose()

    per_order = engine_cpu.per_order_ms(before, after, measured)
    lags.sort()
    print(f"orders: {measured} measured at {args.rate}/s (+{warm} warm-up), {failures} failed")
    print(f"events delivered: {received} of {measured * args.events_per_order}")
    print(
        f"delivery lag ms: p50 {_percentile(lags, 0.5):.1f}  p99 {_percentile(lags, 0.99):.1f}  "
        f"max {lags[-1] if lags else float('nan'):.1f}"
    )
    print(f"CPU ms/order: api {per_order['api']:.2f}  redis {per_order.get('redis', float('nan')):.2f}")
    print(f"API RSS MiB: {api.memory_info().rss / 2**20:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--rate", type=float, default=250.0, help="orders/s offered, open loop")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    parser.add_argument("--events-per-order", type=int, default=5, help="pending + up to 4 more (1-5)")
    args = parser.parse_args()
    args.events_per_order = max(1, min(5, args.events_per_order))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
