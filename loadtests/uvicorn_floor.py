"""What the API's web stack costs per order before any engine code runs: the floor under the realistic point.

The realistic point (bench.py --rate 60 --ws order, default latencies) gives every order one POST and one
WebSocket that carries its lifecycle. This runs the same client against a server that does nothing else:
uvicorn with the API's own choices (uvloop, httptools, the default WebSocket implementation), answering
POST /api/orders/execute with a new orderId and, on /ws/orders/{id}, sending the five status events of a
market order (each as big as the engine's, spaced over ~2.5 s as the simulated venues space them), then
closing. No Redis, no guard, no store:

    uv run python loadtests/uvicorn_floor.py --rate 60 --duration 30

`--app asgi` is a bare ASGI callable (uvicorn's own cost); `--app fastapi` routes through FastAPI (what the
framework adds). It prints the server process's CPU per order (user + system, after the warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import psutil
import uvicorn
from fastapi import FastAPI, WebSocket

from loadtests.bench_client import ClientPlan, run_client
from loadtests.machine import calibration_ms
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus

#: (status, seconds after the previous event) of a market order at the simulated venues' default latencies.
LIFECYCLE = (
    (OrderStatus.PENDING, 0.0),
    (OrderStatus.ROUTING, 0.005),
    (OrderStatus.BUILDING, 0.2),
    (OrderStatus.SUBMITTED, 0.2),
    (OrderStatus.CONFIRMED, 2.1),
)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def lifecycle_messages(order_id: UUID) -> list[tuple[bytes, float]]:
    """The five events as the engine would send them, each with the wait before it."""
    messages = []
    for seq, (status, wait_s) in enumerate(LIFECYCLE, start=1):
        event = OrderEvent(
            order_id, seq, status, "market", attempt=1, dex="meteora",
            quotes={"raydium": {"price": "101.123456", "fee": "0.0025"}, "meteora": {"price": "101.2", "fee": "0.002"}},
            tx_hash="5" * 88 if status is OrderStatus.CONFIRMED else None,
            executed_price=Decimal("101.2") if status is OrderStatus.CONFIRMED else None,
            amount_out=Decimal("101.2") if status is OrderStatus.CONFIRMED else None,
            extra={"venueLatencyMs": int(wait_s * 1000)},
        )  # fmt: skip
        messages.append((event.to_json(), wait_s))
    return messages


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The two endpoints as a bare ASGI callable."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        while (await receive()).get("more_body"):
            pass
        body = b'{"orderId":"%s"}' % str(uuid4()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        for message, wait_s in lifecycle_messages(UUID(scope["path"].rsplit("/", 1)[-1])):
            await asyncio.sleep(wait_s)
            await send({"type": "websocket.send", "bytes": message})
        await send({"type": "websocket.close", "code": 1000})


def fastapi_app() -> FastAPI:
    """The two endpoints as FastAPI routes."""
    app = FastAPI()

    @app.post("/api/orders/execute")
    async def execute(body: dict[str, Any]) -> dict[str, str]:
        return {"orderId": str(uuid4())}

    @app.websocket("/ws/orders/{order_id}")
    async def follow(websocket: WebSocket, order_id: UUID) -> None:
        await websocket.accept()
        for message, wait_s in lifecycle_messages(order_id):
            await asyncio.sleep(wait_s)
            await websocket.send_bytes(message)
        await websocket.close()

    return app


def serve(app_name: str, port: int) -> None:
    app = bare_app if app_name == "asgi" else fastapi_app()
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def measure(args: argparse.Namespace) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", args.app, "--port", str(port)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        process = psutil.Process(server.pid)
        api, warm = f"http://127.0.0.1:{port}", int(args.rate * args.warmup_s)
        count = int(args.rate * args.duration)
        await run_client(ClientPlan(api, args.rate, warm, 0, "floor", time.time(), ws_mode="order"))
        before = process.cpu_times()
        result = await run_client(ClientPlan(api, args.rate, count, warm, "floor", time.time(), ws_mode="order"))
        after = process.cpu_times()
    finally:
        server.terminate()
        server.wait()
    confirmed = sum(1 for record in result.records if record["status"] == "confirmed")
    cpu_ms = (after.user + after.system - before.user - before.system) * 1000
    print(f"{args.app}: {confirmed} of {count} orders confirmed at {args.rate}/s, one WebSocket each")
    print(f"server CPU ms/order: {cpu_ms / max(confirmed, 1):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=("asgi", "fastapi"), default="asgi")
    parser.add_argument("--rate", type=float, default=60)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--warmup-s", type=float, default=5)
    parser.add_argument("--serve", choices=("asgi", "fastapi"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    print(f"machine: calibration {calibration_ms():.0f} ms (lower = faster; compare runs only at similar values)")
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
