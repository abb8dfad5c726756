"""Following one order over the API's WebSocket (`/ws/orders/{id}`: replay, then live, until its terminal
event), handing each event to a callback (services/cli/display.py shows them).

If the socket drops before the end (an API restart, a proxy timeout), the follower reconnects with
`?after=<last seq>`, so no event is missed or shown twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import connect

from services.cli.api_client import CONNECT_TIMEOUT_S, ApiClient
from services.cli.errors import CliError, ExitCode
from shared.domain.lifecycle import TERMINAL, OrderStatus

S = OrderStatus
#: How each terminal status (shared.domain.lifecycle.TERMINAL, which a test keeps equal) ends `submit` and `watch`.
TERMINAL_EXIT: dict[str, ExitCode] = {
    S.CONFIRMED: ExitCode.OK,
    S.FAILED: ExitCode.ORDER_FAILED,
    S.CANCELLED: ExitCode.ORDER_CANCELLED,
    S.EXPIRED: ExitCode.ORDER_EXPIRED,
}

CLOSE_NORMAL = 1000
#: The API's close codes (services/api/routes/streams.py) that reconnecting cannot fix.
REFUSALS = {
    4400: ExitCode.FAILED,
    4401: ExitCode.FAILED,
    4404: ExitCode.NOT_FOUND,
    4429: ExitCode.FAILED,
    1008: ExitCode.FAILED,
    1009: ExitCode.FAILED,
}
#: Reconnecting gives up after this long without a working socket (an API restart on a loaded machine can
#: take tens of seconds).
RECONNECT_FOR_S = 60.0
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.2, 3.0
#: A socket open this long was working, even if the order had nothing to say.
HEALTHY_AFTER_S = 2.0
MAX_MESSAGE_BYTES = 1 << 20


@dataclass
class Outcome:
    """How following ended: the terminal status, and its event when the socket delivered it."""

    status: str
    event: dict[str, Any] | None

    @property
    def exit_code(self) -> ExitCode:
        return TERMINAL_EXIT.get(self.status, ExitCode.FAILED)


def is_terminal(status: str | None) -> bool:
    return status in TERMINAL


@dataclass
class _Stream:
    """One order's events as followed so far, across sockets, and the deadline for all of it."""

    client: ApiClient
    order_id: str
    on_event: Callable[[dict[str, Any]], None]
    timeout_s: float | None
    last_seq: int
    last_status: str | None = None
    deadline: float | None = None

    def __post_init__(self) -> None:
        if self.timeout_s is not None:
            self.deadline = time.monotonic() + self.timeout_s

    def remaining(self) -> float | None:
        """Seconds left before the timeout (None: no timeout); raises CliError TIMEOUT once none are."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise CliError(
                f"order {self.order_id} did not end within {self.timeout_s:g} s (last status: "
                f"{self.last_status or 'unknown'}); it carries on: `order-engine watch {self.order_id}` follows it",
                ExitCode.TIMEOUT,
                "timeout",
            )
        return left

    def is_new(self, message: dict[str, Any]) -> bool:
        """An event not shown yet (the API's other messages, and replayed events already shown, are not)."""
        seq = message.get("seq")
        return message.get("type") == "status" and isinstance(seq, int) and seq > self.last_seq

    def show(self, event: dict[str, Any]) -> Outcome | None:
        """Show a new event; its Outcome when it is the terminal one."""
        self.last_seq, self.last_status = event["seq"], event.get("status")
        self.on_event(event)
        return Outcome(event["status"], event) if is_terminal(self.last_status) else None


@dataclass
class _Socket:
    """What one socket (one connection attempt) did."""

    refusal: dict[str, Any] | None = None
    healthy: bool = False
    opened_at: float | None = None
    last_error: str = "closed before the order ended"

    def was_working(self) -> bool:
        """It delivered an event or stayed open a while: the next one starts the reconnect clock afresh."""
        return self.healthy or (self.opened_at is not None and time.monotonic() - self.opened_at >= HEALTHY_AFTER_S)


def _read_until_terminal(stream: _Stream, attempt: _Socket, url: str) -> Outcome:
    """Open one socket and show its events until the terminal one; raises whatever ends the socket first."""
    left = stream.remaining()
    with connect(
        url,
        additional_headers=stream.client.auth_headers(),
        open_timeout=CONNECT_TIMEOUT_S if left is None else min(CONNECT_TIMEOUT_S, left),
        max_size=MAX_MESSAGE_BYTES,
    ) as socket:
        attempt.opened_at = time.monotonic()
        try:
            while True:
                try:
                    raw = socket.recv(timeout=stream.remaining())
                except TimeoutError:
                    stream.remaining()  # raises the timeout
                    continue
                try:
                    message = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue  # not one of the API's messages
                if not isinstance(message, dict):
                    continue
                if message.get("type") == "error":
                    attempt.refusal = message
                    continue
                if not stream.is_new(message):
                    continue
                attempt.healthy = True
                if (outcome := stream.show(message)) is not None:
                    return outcome
        finally:
            socket.close()  # a normal close (1000), also when we stop (timeout, Ctrl-C): not an error


def _closed(stream: _Stream, attempt: _Socket, exc: ConnectionClosed) -> Outcome | None:
    """A closed socket: raises when the API refused the stream; the Outcome when the order ended meanwhile;
    else None (reconnect), with `attempt.last_error` saying why."""
    code = exc.rcvd.code if exc.rcvd is not None else None
    if code in REFUSALS:
        what = attempt.refusal or {
            "error": f"closed_{code}",
            "message": (exc.rcvd.reason if exc.rcvd is not None else "") or f"closed with {code}",
        }
        raise CliError(
            f"the API refused to stream order {stream.order_id}: {what.get('message')} (close {code} "
            f"{what.get('error')})",
            REFUSALS[code],
            str(what.get("error")),
        ) from None
    attempt.last_error = f"closed with code {code}" if code else "the connection dropped"
    if code == CLOSE_NORMAL:
        # The server ends a stream after the terminal event; none came: every event was at or before
        # `after`. The order's state says how it ended.
        state = stream.client.get(f"/api/orders/{stream.order_id}", what="")
        if is_terminal(state.get("status")):
            return Outcome(state["status"], None)
    return None


def _handshake_refused(stream: _Stream, attempt: _Socket, exc: InvalidStatus) -> None:
    """An HTTP answer instead of a socket: a 4xx will not change by retrying (raises); anything else may."""
    status = exc.response.status_code
    if 400 <= status < 500:
        raise CliError(
            f"the API refused the WebSocket for order {stream.order_id} (HTTP {status})",
            ExitCode.NOT_FOUND if status == 404 else ExitCode.FAILED,
            f"http_{status}",
        ) from None
    attempt.last_error = f"HTTP {status} on the handshake"


@dataclass
class _Reconnect:
    """Backoff between sockets, and the clock that gives up after RECONNECT_FOR_S without a working one."""

    backoff: float = RECONNECT_MIN_S
    failing_since: float | None = None

    def wait(self, stream: _Stream, attempt: _Socket) -> None:
        if attempt.was_working():
            self.failing_since, self.backoff = None, RECONNECT_MIN_S
        self.failing_since = self.failing_since or time.monotonic()
        if time.monotonic() - self.failing_since > RECONNECT_FOR_S:
            raise CliError(
                f"cannot keep a WebSocket open to {stream.client.shown_url} for order {stream.order_id} "
                f"(tried for {RECONNECT_FOR_S:g} s; last: {attempt.last_error})",
                ExitCode.UNAVAILABLE,
                "unavailable",
            )
        left = stream.remaining()
        time.sleep(self.backoff if left is None else min(self.backoff, left))
        self.backoff = min(self.backoff * 2, RECONNECT_MAX_S)


def follow(
    client: ApiClient,
    order_id: str,
    on_event: Callable[[dict[str, Any]], None],
    *,
    after: int = 0,
    timeout_s: float | None = None,
) -> Outcome:
    """Call `on_event` for every event after `after`, in seq order, until the order's terminal event.

    Raises CliError: NOT_FOUND (unknown order), FAILED (the API refused the socket), TIMEOUT (no end within
    `timeout_s`), UNAVAILABLE (no socket for RECONNECT_FOR_S)."""
    stream = _Stream(client, order_id, on_event, timeout_s, last_seq=after)
    reconnect = _Reconnect()
    while True:
        # Each socket resumes after the last event seen, so none is missed or shown twice.
        url = client.ws_url(f"/ws/orders/{order_id}?after={stream.last_seq}")
        attempt = _Socket()
        try:
            return _read_until_terminal(stream, attempt, url)
        except ConnectionClosed as exc:
            if (outcome := _closed(stream, attempt, exc)) is not None:
                return outcome
        except InvalidStatus as exc:
            _handshake_refused(stream, attempt, exc)
        except InvalidURI:
            raise CliError(f"not a WebSocket URL: {url}", ExitCode.USAGE, "usage") from None
        except (OSError, InvalidHandshake) as exc:  # refused, reset, DNS, a timeout, a broken handshake
            attempt.last_error = str(exc) or type(exc).__name__
        reconnect.wait(stream, attempt)
