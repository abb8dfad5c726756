"""Following one order over the API's WebSocket (`/ws/orders/{id}`: replay, then live, until its terminal
event) and showing it as it happens: for people, one line per event under a live progress display (rich);
for scripts (`--json`), one JSON object per line (NDJSON), each event exactly as the API sent it.

If the socket drops before the end (an API restart, a proxy timeout), the follower reconnects with
`?after=<last seq>`, so no event is missed or shown twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import connect

from services.cli.api_client import CONNECT_TIMEOUT_S, ApiClient
from services.cli.errors import CliError, ExitCode
from services.cli.output import print_json_line
from shared.domain.lifecycle import TERMINAL, OrderStatus
from shared.domain.order_types import OrderType

S = OrderStatus
MARKET_PATH = (S.PENDING, S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED)
RESTING_PATH = (S.PENDING, S.WAITING, S.TRIGGERED, S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED)
HAPPY_PATHS: dict[str, tuple[OrderStatus, ...]] = {
    OrderType.MARKET: MARKET_PATH,
    OrderType.LIMIT: RESTING_PATH,
    OrderType.SNIPER: RESTING_PATH,
}

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

STATUS_STYLES: dict[str, str] = {
    S.CONFIRMED: "bold green",
    S.FAILED: "bold red",
    S.CANCELLED: "bold yellow",
    S.EXPIRED: "bold yellow",
    S.WAITING: "cyan",
    S.TRIGGERED: "bold cyan",
}


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


# --- following ----------------------------------------------------------------------------------------------


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


# --- showing events ---------------------------------------------------------------------------------------


def _clock(timestamp: str | None) -> str:
    """`2026-01-01T12:00:00.123Z` → `12:00:00.123`."""
    if not timestamp or "T" not in timestamp:
        return timestamp or "-"
    return timestamp.split("T", 1)[1].rstrip("Z")


def _quotes(quotes: dict[str, Any], chosen: str | None) -> str:
    parts = [
        f"{dex} {quote.get('price', '?')} (out {quote.get('amountOut', '?')}, fee {quote.get('fee', '?')})"
        for dex, quote in quotes.items()
        if isinstance(quote, dict)
    ]
    return "quotes " + ", ".join(parts) + (f" → {chosen}" if chosen else "")


def _trigger(trigger: dict[str, Any] | None, token_out: str | None) -> str:
    if not trigger:
        return "its trigger fires"
    if trigger.get("kind") == "listing":
        return "a pool lists the pair"
    return f"a pool holds {trigger.get('minLiquidity')} {token_out or 'of tokenOut'}"


def _pending(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    return ["accepted", f"a replay of {event['replayOf']}"] if event.get("replayOf") else ["accepted"]


def _waiting(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    if event.get("limitPrice") is not None:
        return [f"resting until the BEST price reaches {event['limitPrice']}"]
    return [f"resting until {_trigger(event.get('trigger'), order.get('tokenOut'))}"]


def _triggered(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    if event.get("triggerPrice") is not None:
        return [f"BEST price {event['triggerPrice']} crossed the limit {event.get('limitPrice')}"]
    if venue_event := event.get("venueEvent"):
        if venue_event.get("kind") == "already_met":
            return ["its condition already held"]
        return [f"{venue_event.get('kind')} on {venue_event.get('dex')} ({venue_event.get('id')})"]
    return ["triggered"]


def _building(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    tx = event.get("transaction") or {}
    parts = [f"transaction on {event.get('dex')}"]
    if tx.get("minAmountOut"):
        parts.append(f"min out {tx['minAmountOut']}")
    return parts


def _confirmed(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    out = f"{event.get('amountOut')} {order['tokenOut']}" if order.get("tokenOut") else event.get("amountOut")
    return [f"price {event.get('executedPrice')}, out {out} on {event.get('dex')}", f"tx {event.get('txHash')}"]


#: What each status's event says: (event, order) → its parts, joined by ", ".
DESCRIPTIONS: dict[str, Callable[[dict[str, Any], dict[str, Any]], list[str]]] = {
    S.PENDING: _pending,
    S.WAITING: _waiting,
    S.TRIGGERED: _triggered,
    S.ROUTING: lambda event, order: [_quotes(event.get("quotes") or {}, event.get("dex"))],
    S.BUILDING: _building,
    S.SUBMITTED: lambda event, order: [f"tx {event.get('txHash')}"],
    S.CONFIRMED: _confirmed,
    S.FAILED: lambda event, order: [f"{event.get('error')}: {event.get('errorMessage') or '-'}"],
    S.EXPIRED: lambda event, order: ["expiresAt passed"],
    S.CANCELLED: lambda event, order: ["cancelled while resting"],
}


def describe(event: dict[str, Any], order: dict[str, Any] | None = None) -> str:
    """What one event says, in a few words (its status and seq are shown beside it); `order` (its request or
    state) names the tokens."""
    describer = DESCRIPTIONS.get(str(event.get("status")))
    return ", ".join(describer(event, order or {})) if describer else ""


def event_line(event: dict[str, Any], order: dict[str, Any] | None = None) -> Text:
    status = str(event.get("status"))
    line = Text(f"{event.get('seq', '?'):>3}  {_clock(event.get('timestamp'))}  ")
    line.append(f"{status:<10}", style=STATUS_STYLES.get(status, "bold"))
    attempt = event.get("attempt")
    line.append(f"  {'attempt ' + str(attempt) if attempt else '':<9}  ", style="yellow" if (attempt or 0) > 1 else "")
    line.append(describe(event, order))
    return line


def summary(order: dict[str, Any], outcome: Outcome) -> str:
    """The last line: how the order ended."""
    order_id, event = order.get("orderId"), outcome.event or order
    if outcome.status == S.CONFIRMED:
        sold = f"{order.get('amount')} {order.get('tokenIn')}"
        return (
            f"order {order_id} confirmed: {sold} → {event.get('amountOut')} {order.get('tokenOut')} "
            f"at {event.get('executedPrice')} on {event.get('dex')} (tx {event.get('txHash')})"
        )
    if outcome.status == S.FAILED:
        return f"order {order_id} failed ({event.get('error')}): {event.get('errorMessage') or 'no reason given'}"
    if outcome.status == S.EXPIRED:
        return f"order {order_id} expired: its expiresAt passed before it triggered"
    return f"order {order_id} was cancelled"


class JsonLines:
    """`--json`: every event as the API sent it, one per line."""

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def event(self, event: dict[str, Any]) -> None:
        print_json_line(event)


class LiveDisplay:
    """For people: one line per event; on a terminal, a progress bar along the order's path below them."""

    def __init__(self, order: dict[str, Any], console: Console | None = None) -> None:
        """`order`: its request or current state (type, tokens, and the status to start the bar from)."""
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.order = order
        self.path = HAPPY_PATHS.get(order.get("type") or "", MARKET_PATH)
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.status = order.get("status")

    def __enter__(self) -> LiveDisplay:
        if self.console.is_terminal:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.task = self.progress.add_task(self._stage(self.status, None), total=len(self.path))
            self._advance(self.status, None)
            self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _stage(self, status: str | None, attempt: int | None) -> str:
        if status is None:
            return "connecting"
        return status + (f" (attempt {attempt})" if attempt and attempt > 1 else "")

    def _advance(self, status: str | None, attempt: int | None) -> None:
        if self.progress is None or self.task is None:
            return
        done = self.path.index(status) + 1 if status in self.path else None
        self.progress.update(self.task, description=self._stage(status, attempt), completed=done)

    def event(self, event: dict[str, Any]) -> None:
        self.console.print(event_line(event, self.order))
        self.status = event.get("status")
        self._advance(self.status, event.get("attempt"))
