"""Following an order's WebSocket from a locust user: websocket-client (plain sockets, which gevent patches),
never asyncio, which breaks under locust's greenlets."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
import websocket

TERMINAL = frozenset({"confirmed", "failed", "cancelled", "expired"})


def ws_base(host: str) -> str:
    """ws://host:port for the locust --host http://host:port (https → wss)."""
    return "ws" + host.removeprefix("http").rstrip("/")


def event_time(message: dict) -> float:
    """The event's `timestamp` (RFC 3339, millisecond precision) as epoch seconds."""
    return datetime.fromisoformat(message["timestamp"]).timestamp()


def lag_ms(message: dict, received: float) -> float:
    """Delivery lag of one event: when it arrived minus when the engine stamped it (same machine's clock).
    Timestamps are truncated to the millisecond, so a lag under 1 ms can read as 0."""
    return max(0.0, (received - event_time(message)) * 1000)


@dataclass
class Received:
    message: dict
    at: float  # time.time() when it arrived
    size: int


@dataclass
class OrderStream:
    """What one order's socket delivered: every event with its arrival time, and how the socket ended."""

    order_id: str
    opened_at: float
    events: list[Received] = field(default_factory=list)
    close_code: int | None = None
    timed_out: bool = False
    error: str | None = None

    @property
    def terminal(self) -> Received | None:
        last = self.events[-1] if self.events else None
        return last if last and last.message.get("status") in TERMINAL else None

    def first(self, status: str) -> Received | None:
        return next((r for r in self.events if r.message.get("status") == status), None)


def open_socket(url: str, timeout_s: float) -> websocket.WebSocket:
    return websocket.create_connection(url, timeout=timeout_s, enable_multithread=False)


def receive(sock: websocket.WebSocket) -> tuple[bytes | None, int | None]:
    """One data message (None, close code) when the server closes; raises on timeout or a broken socket."""
    opcode, data = sock.recv_data(control_frame=True)
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
        return None, code
    if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
        return b"", None
    return data, None


def follow_order(
    base: str, order_id: str, timeout_s: float, on_event: Callable[[Received], None] | None = None
) -> OrderStream:
    """Read /ws/orders/{id} (replay, then live) until the server closes it after the terminal event, or
    `timeout_s` passes. `on_event` sees each event as it arrives (the subscribers scenario times each one)."""
    stream = OrderStream(order_id, time.time())
    deadline = time.monotonic() + timeout_s
    try:
        sock = open_socket(f"{base}/ws/orders/{order_id}", timeout_s)
    except (OSError, websocket.WebSocketException) as exc:
        stream.error = f"connect: {type(exc).__name__}: {exc}"
        return stream
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stream.timed_out = True
                return stream
            sock.settimeout(remaining)
            data, code = receive(sock)
            if code is not None:
                stream.close_code = code
                return stream
            if not data:
                continue
            got = Received(orjson.loads(data), time.time(), len(data))
            stream.events.append(got)
            if on_event:
                on_event(got)
    except websocket.WebSocketTimeoutException:
        stream.timed_out = True
    except (OSError, websocket.WebSocketException) as exc:
        stream.error = f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()
    return stream
