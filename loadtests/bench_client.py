"""One open-loop load client: submits orders on a fixed schedule and follows each to its terminal event.

Open loop: order i is sent at `start_at + i / rate` whether or not earlier ones were answered, so a slow
engine cannot slow the offered load down (no coordinated omission). How late the client itself sent each
order is recorded too: if that grows, this client process could not offer the rate and needs company
(`--clients`).

Events arrive over one `/ws?userId=` socket per client (opened before the first order, so nothing is missed;
cheapest for both sides) or, with `ws_mode="order"`, over one `/ws/orders/{id}` socket per order.
Run in its own process by `bench.py`; everything it returns is plain data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import psutil
from websockets.asyncio.client import connect

from loadtests.raw_http import HttpError, RawHttpPool

TERMINAL = frozenset({"confirmed", "failed", "cancelled", "expired"})


@dataclass
class OrderRecord:
    index: int
    scheduled: float
    sent: float = 0.0
    answered: float = 0.0
    http_status: int = 0
    order_id: str = ""
    status: str = ""  # the terminal status, "" while none arrived
    terminal_at: float = 0.0
    #: Sum of every event's venueLatencyMs: the simulated waits inside this order's life.
    venue_ms: int = 0
    attempts: int = 0
    error: str = ""


@dataclass
class ClientPlan:
    api: str
    rate: float
    count: int
    first_index: int
    user_id: str
    start_at: float
    ws_mode: str = "user"
    timeout_s: float = 30.0
    pair: tuple[str, str] = ("SOL", "USDC")


@dataclass
class ClientResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    cpu_s: float = 0.0
    max_late_s: float = 0.0
    ws_errors: int = 0


class _Follower:
    """Folds the events of many orders into their records as they arrive."""

    def __init__(self) -> None:
        self.by_order: dict[str, OrderRecord] = {}
        self.early: dict[str, list[dict[str, Any]]] = {}  # events that beat their POST's answer
        self.terminal = 0
        self.changed = asyncio.Event()

    def attach(self, record: OrderRecord) -> None:
        self.by_order[record.order_id] = record
        for message in self.early.pop(record.order_id, []):
            self._apply(record, message)

    def on_message(self, raw: bytes | str, arrived: float) -> None:
        message = orjson.loads(raw)
        order_id = message.get("orderId")
        if order_id is None:
            return
        message["_arrived"] = arrived
        record = self.by_order.get(order_id)
        if record is None:
            self.early.setdefault(order_id, []).append(message)
        else:
            self._apply(record, message)

    def _apply(self, record: OrderRecord, message: dict[str, Any]) -> None:
        if record.status:
            return
        record.venue_ms += int(message.get("venueLatencyMs") or 0)
        record.attempts = max(record.attempts, int(message.get("attempt") or 0))
        if message.get("status") in TERMINAL:
            record.status = message["status"]
            record.terminal_at = message["_arrived"]
            record.error = message.get("error") or ""
            self.terminal += 1
            self.changed.set()


async def _user_socket(plan: ClientPlan, follower: _Follower, ready: asyncio.Event, result: ClientResult) -> None:
    url = plan.api.replace("http", "ws", 1) + f"/ws?userId={plan.user_id}"
    try:
        async with connect(url, max_size=None, ping_interval=None, compression=None) as socket:
            ready.set()
            async for raw in socket:
                follower.on_message(raw, time.time())
    except Exception:  # noqa: BLE001 - reported as a count; the orders it would have told us about show as lost
        result.ws_errors += 1
        ready.set()


async def _order_socket(plan: ClientPlan, follower: _Follower, order_id: str, result: ClientResult) -> None:
    url = plan.api.replace("http", "ws", 1) + f"/ws/orders/{order_id}"
    try:
        async with connect(url, max_size=None, ping_interval=None, compression=None) as socket:
            async for raw in socket:
                follower.on_message(raw, time.time())
    except Exception:  # noqa: BLE001
        result.ws_errors += 1


async def run_client(plan: ClientPlan) -> ClientResult:
    result = ClientResult()
    follower = _Follower()
    records = [OrderRecord(plan.first_index + i, plan.start_at + i / plan.rate) for i in range(plan.count)]
    tasks: set[asyncio.Task[Any]] = set()
    accepted = 0
    client = RawHttpPool(plan.api)
    try:
        socket_task = None
        if plan.ws_mode == "user":
            ready = asyncio.Event()
            socket_task = asyncio.create_task(_user_socket(plan, follower, ready, result))
            await ready.wait()

        async def submit(record: OrderRecord) -> None:
            nonlocal accepted
            body = {
                "type": "market",
                "tokenIn": plan.pair[0],
                "tokenOut": plan.pair[1],
                "amount": f"{1 + (record.index % 100) / 100:.2f}",
                "slippageBps": 500,
                "userId": plan.user_id,
            }
            record.sent = time.time()
            try:
                status, answer = await client.post_json("/api/orders/execute", body)
            except HttpError as exc:
                record.answered, record.error = time.time(), f"http:{exc}"
                return
            record.answered, record.http_status = time.time(), status
            if status != 200:
                record.error = f"http:{status}"
                return
            record.order_id = answer["orderId"]
            accepted += 1
            follower.attach(record)
            if plan.ws_mode == "order":
                spawn(_order_socket(plan, follower, record.order_id, result))

        def spawn(coroutine: Any) -> None:
            task = asyncio.create_task(coroutine)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        for record in records:
            delay = record.scheduled - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            result.max_late_s = max(result.max_late_s, time.time() - record.scheduled)
            spawn(submit(record))
        while any(not r.answered for r in records):
            await asyncio.sleep(0.05)
        deadline = time.time() + plan.timeout_s
        while follower.terminal < accepted and time.time() < deadline:
            follower.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(follower.changed.wait(), 0.5)
        for task in [*tasks, *([socket_task] if socket_task else [])]:
            task.cancel()
        await asyncio.gather(*tasks, *([socket_task] if socket_task else []), return_exceptions=True)
    finally:
        await client.close()
    result.records = [asdict(r) for r in records]
    times = psutil.Process(os.getpid()).cpu_times()
    result.cpu_s = times.user + times.system
    return result


def run_client_process(plan: ClientPlan) -> ClientResult:
    """Entry point in a client process."""
    return asyncio.run(run_client(plan))
