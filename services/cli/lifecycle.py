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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import connect

from services.cli.api_client import CONNECT_TIMEOUT_S, ApiClient
from services.cli.errors import CliError, ExitCode
from services.cli.output import print_json_line

MARKET_PATH = ("pending", "routing", "building", "submitted", "confirmed")
RESTING_PATH = ("pending", "waiting", "triggered", "routing", "building", "submitted", "confirmed")
HAPPY_PATHS = {"market": MARKET_PATH, "limit": RESTING_PATH, "sniper": RESTING_PATH}

#: How each terminal status ends `submit` and `watch`.
TERMINAL_EXIT = {
    "confirmed": ExitCode.OK,
    "failed": ExitCode.ORDER_FAILED,
    "cancelled": ExitCode.ORDER_CANCELLED,
    "expired": ExitCode.ORDER_EXPIRED,
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

STATUS_STYLES = {
    "confirmed": "bold green",
    "failed": "bold red",
    "cancelled": "bold yellow",
    "expired": "bold yellow",
    "waiting": "cyan",
    "triggered": "bold cyan",
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
    return status in TERMINAL_EXIT


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
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last_seq, backoff, failing_since = after, RECONNECT_MIN_S, None
    last_status: str | None = None

    def remaining() -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise CliError(
                f"order {order_id} did not end within {timeout_s:g} s (last status: {last_status or 'unknown'}); "
                f"it carries on: `order-engine watch {order_id}` follows it",
                ExitCode.TIMEOUT,
                "timeout",
            )
        return left

    while True:
        url = client.ws_url(f"/ws/orders/{order_id}?after={last_seq}")
        refusal: dict[str, Any] | None = None
        healthy, opened_at, last_error = False, None, "closed before the order ended"
        try:
            left = remaining()
            with connect(
                url,
                additional_headers=client.auth_headers(),
                open_timeout=CONNECT_TIMEOUT_S if left is None else min(CONNECT_TIMEOUT_S, left),
                max_size=MAX_MESSAGE_BYTES,
            ) as socket:
                opened_at = time.monotonic()
                try:
                    while True:
                        try:
                            raw = socket.recv(timeout=remaining())
                        except TimeoutError:
                            remaining()  # raises the timeout
                            continue
                        try:
                            message = orjson.loads(raw)
                        except orjson.JSONDecodeError:
                            continue  # not one of the API's messages
                        if not isinstance(message, dict):
                            continue
                        if message.get("type") == "error":
                            refusal = message
                            continue
                        seq = message.get("seq")
                        if message.get("type") != "status" or not isinstance(seq, int) or seq <= last_seq:
                            continue  # not an event, or one already shown
                        last_seq, last_status = seq, message.get("status")
                        healthy = True
                        on_event(message)
                        if is_terminal(last_status):
                            return Outcome(last_status, message)
                finally:
                    socket.close()  # a normal close (1000), also when we stop (timeout, Ctrl-C): not an error
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code in REFUSALS:
                what = refusal or {"error": f"closed_{code}", "message": exc.rcvd.reason or f"closed with {code}"}
                raise CliError(
                    f"the API refused to stream order {order_id}: {what.get('message')} (close {code} "
                    f"{what.get('error')})",
                    REFUSALS[code],
                    str(what.get("error")),
                ) from None
            last_error = f"closed with code {code}" if code else "the connection dropped"
            if code == CLOSE_NORMAL:
                # The server ends a stream after the terminal event; none came: every event was at or before
                # `after`. The order's state says how it ended.
                state = client.get(f"/api/orders/{order_id}", what="")
                if is_terminal(state.get("status")):
                    return Outcome(state["status"], None)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if 400 <= status < 500:
                raise CliError(
                    f"the API refused the WebSocket for order {order_id} (HTTP {status})",
                    ExitCode.NOT_FOUND if status == 404 else ExitCode.FAILED,
                    f"http_{status}",
                ) from None
            last_error = f"HTTP {status} on the handshake"
        except InvalidURI:
            raise CliError(f"not a WebSocket URL: {url}", ExitCode.USAGE, "usage") from None
        except (OSError, InvalidHandshake) as exc:  # refused, reset, DNS, a timeout, a broken handshake
            last_error = str(exc) or type(exc).__name__
        # Dropped (or not opened): resume after the last event seen. A socket that delivered an event or
        # stayed open a while was working: the next one starts the reconnect clock afresh.
        if healthy or (opened_at is not None and time.monotonic() - opened_at >= HEALTHY_AFTER_S):
            failing_since, backoff = None, RECONNECT_MIN_S
        failing_since = failing_since or time.monotonic()
        if time.monotonic() - failing_since > RECONNECT_FOR_S:
            raise CliError(
                f"cannot keep a WebSocket open to {client.shown_url} for order {order_id} "
                f"(tried for {RECONNECT_FOR_S:g} s; last: {last_error})",
                ExitCode.UNAVAILABLE,
                "unavailable",
            )
        left = remaining()
        time.sleep(backoff if left is None else min(backoff, left))
        backoff = min(backoff * 2, RECONNECT_MAX_S)


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


def describe(event: dict[str, Any], order: dict[str, Any] | None = None) -> str:
    """What one event says, in a few words (its status and seq are shown beside it); `order` (its request or
    state) names the tokens."""
    status, order = event.get("status"), order or {}
    parts: list[str] = []
    if status == "pending":
        parts.append("accepted")
        if event.get("replayOf"):
            parts.append(f"a replay of {event['replayOf']}")
    elif status == "waiting":
        if event.get("limitPrice") is not None:
            parts.append(f"resting until the BEST price reaches {event['limitPrice']}")
        else:
            parts.append(f"resting until {_trigger(event.get('trigger'), order.get('tokenOut'))}")
    elif status == "triggered":
        if event.get("triggerPrice") is not None:
            parts.append(f"BEST price {event['triggerPrice']} crossed the limit {event.get('limitPrice')}")
        elif venue_event := event.get("venueEvent"):
            if venue_event.get("kind") == "already_met":
                parts.append("its condition already held")
            else:
                parts.append(f"{venue_event.get('kind')} on {venue_event.get('dex')} ({venue_event.get('id')})")
        else:
            parts.append("triggered")
    elif status == "routing":
        parts.append(_quotes(event.get("quotes") or {}, event.get("dex")))
    elif status == "building":
        tx = event.get("transaction") or {}
        parts.append(f"transaction on {event.get('dex')}")
        if tx.get("minAmountOut"):
            parts.append(f"min out {tx['minAmountOut']}")
    elif status == "submitted":
        parts.append(f"tx {event.get('txHash')}")
    elif status == "confirmed":
        out = f"{event.get('amountOut')} {order['tokenOut']}" if order.get("tokenOut") else event.get("amountOut")
        parts.append(f"price {event.get('executedPrice')}, out {out} on {event.get('dex')}")
        parts.append(f"tx {event.get('txHash')}")
    elif status == "failed":
        parts.append(f"{event.get('error')}: {event.get('errorMessage') or '-'}")
    elif status == "expired":
        parts.append("expiresAt passed")
    elif status == "cancelled":
        parts.append("cancelled while resting")
    return ", ".join(parts)


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
    if outcome.status == "confirmed":
        sold = f"{order.get('amount')} {order.get('tokenIn')}"
        return (
            f"order {order_id} confirmed: {sold} → {event.get('amountOut')} {order.get('tokenOut')} "
            f"at {event.get('executedPrice')} on {event.get('dex')} (tx {event.get('txHash')})"
        )
    if outcome.status == "failed":
        return f"order {order_id} failed ({event.get('error')}): {event.get('errorMessage') or 'no reason given'}"
    if outcome.status == "expired":
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
        self.task = None
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
