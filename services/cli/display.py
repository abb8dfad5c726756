"""How `submit` and `watch` show an order's events: for people, one line per event (what each status says)
under a live progress display (rich); for scripts (`--json`), one JSON object per line (NDJSON), each event
exactly as the API sent it; and the last line, how the order ended.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

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

from services.cli.follow import Outcome
from services.cli.output import print_json_line
from shared.domain.conditional import Condition, trail_level
from shared.domain.lifecycle import OrderStatus
from shared.domain.order_types import OrderType

S = OrderStatus
#: The statuses an order passes on its way to `confirmed`: the progress bar's steps, per order type.
MARKET_PATH = (S.PENDING, S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED)
RESTING_PATH = (S.PENDING, S.WAITING, S.TRIGGERED, S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED)
HAPPY_PATHS: dict[str, tuple[OrderStatus, ...]] = {
    OrderType.MARKET: MARKET_PATH,
    OrderType.LIMIT: RESTING_PATH,
    OrderType.SNIPER: RESTING_PATH,
    OrderType.STOP: RESTING_PATH,
    OrderType.TRAILING_STOP: RESTING_PATH,
    OrderType.OCO: RESTING_PATH,
}

STATUS_STYLES: dict[str, str] = {
    S.CONFIRMED: "bold green",
    S.FAILED: "bold red",
    S.CANCELLED: "bold yellow",
    S.EXPIRED: "bold yellow",
    S.WAITING: "cyan",
    S.TRIGGERED: "bold cyan",
}


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


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list field (`routePlan`, `legs`); [] when it is absent (an event from before it)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _routing(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    quotes = event.get("quotes") or {}
    plan = _dicts(event.get("routePlan"))
    if not plan:
        return [_quotes(quotes, event.get("dex"))]
    legs = " / ".join(f"{leg.get('dex')} {leg.get('percent')}%" for leg in plan)
    parts = ["re-quoted"] if event.get("requoted") else []
    parts.append(f"split {legs}" if len(plan) > 1 else legs)
    if event.get("priceImpactPct") is not None:
        parts.append(f"impact {event['priceImpactPct']} %")
    if event.get("otherAmountThreshold") is not None:
        parts.append(f"min out {event['otherAmountThreshold']}")
    # The route already says where the order goes (`dex` is only its largest leg): no "→ dex" after the quotes.
    return [*parts, _quotes(quotes, None)] if quotes else parts


def _submitted(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    tx = f"tx {event.get('txHash')}"
    return [tx] if event.get("slot") is None else [tx, f"slot {event['slot']}"]


def _trigger(trigger: dict[str, Any] | None, token_out: str | None) -> str:
    if not trigger:
        return "its trigger fires"
    if trigger.get("kind") == "listing":
        return "a pool lists the pair"
    return f"a pool holds {trigger.get('minLiquidity')} {token_out or 'of tokenOut'}"


def condition_text(terms: dict[str, Any]) -> str | None:
    """When a conditional order fires, from its terms (its request, state or `waiting` event); None for other
    types. `the BEST price is ≤ 140 (stop)`."""
    stop, take_profit, trail = terms.get("stopPrice"), terms.get("takeProfitPrice"), terms.get("trailBps")
    if take_profit is not None:
        return f"the BEST price is ≥ {take_profit} (take-profit) or ≤ {stop} (stop)"
    if stop is not None:
        return f"the BEST price is ≤ {stop} (stop)"
    if trail is not None:
        activation = terms.get("activationPrice")
        armed = "next tick" if activation is None else f"first BEST ≥ {activation}"
        return f"the BEST price falls {trail} bps below its high since armed (armed at the {armed})"
    return None


def _level(high: Any, trail_bps: Any) -> str | None:
    """A trailing stop's level for this high, as the API computes it; None when either is missing or garbled."""
    try:
        return str(trail_level(Decimal(str(high)), int(trail_bps)))
    except (InvalidOperation, TypeError, ValueError):
        return None


def _fired(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    """A conditional order's `triggered`: which condition fired, at what BEST price, against what."""
    condition, price = event.get("trigger"), event.get("triggerPrice")
    terms = {**order, **event}
    if condition == Condition.STOP:
        return [f"stop: BEST price {price} ≤ stop {terms.get('stopPrice')}"]
    if condition == Condition.TAKE_PROFIT:
        return [f"take-profit: BEST price {price} ≥ take-profit {terms.get('takeProfitPrice')}"]
    if condition == Condition.TRAIL:
        high, bps = event.get("highWaterMark"), terms.get("trailBps")
        level = _level(high, bps)
        if level is None:  # no event is written without its high; should one be, say what it has
            return [f"trail: BEST price {price} fell {bps} bps below its high"]
        return [f"trail: BEST price {price} ≤ level {level} (high {high} − {bps} bps)"]
    return [f"{condition}: BEST price {price}"]


def _pending(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    return ["accepted", f"a replay of {event['replayOf']}"] if event.get("replayOf") else ["accepted"]


def _waiting(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    if (condition := condition_text(event)) is not None:
        return [f"resting until {condition}"]
    if event.get("limitPrice") is not None:
        return [f"resting until the BEST price reaches {event['limitPrice']}"]
    return [f"resting until {_trigger(event.get('trigger'), order.get('tokenOut'))}"]


def _triggered(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    if isinstance(event.get("trigger"), str):  # a condition; a sniper order's trigger is a {"kind": …} object
        return _fired(event, order)
    if event.get("triggerPrice") is not None:
        return [f"BEST price {event['triggerPrice']} crossed the limit {event.get('limitPrice')}"]
    if venue_event := event.get("venueEvent"):
        if venue_event.get("kind") == "already_met":
            return ["its condition already held"]
        return [f"{venue_event.get('kind')} on {venue_event.get('dex')} ({venue_event.get('id')})"]
    return ["triggered"]


def _building(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    tx = event.get("transaction") or {}
    venues = [leg.get("dex") for leg in _dicts(tx.get("legs"))] or [event.get("dex")]
    parts = [f"transaction on {' + '.join(str(venue) for venue in venues)}"]
    if tx.get("minAmountOut"):
        parts.append(f"min out {tx['minAmountOut']}")
    return parts


def _amount(amount: Any, token: str | None) -> str:
    return f"{amount} {token}" if token else str(amount)


def _confirmed(event: dict[str, Any], order: dict[str, Any]) -> list[str]:
    token_out = order.get("tokenOut")
    out = _amount(event.get("amountOut"), token_out)
    legs = _dicts(event.get("legs"))
    if len(legs) < 2:
        return [f"price {event.get('executedPrice')}, out {out} on {event.get('dex')}", f"tx {event.get('txHash')}"]
    each = ", ".join(
        f"{leg.get('dex')} {leg.get('inAmount')} → {_amount(leg.get('outAmount'), token_out)}" for leg in legs
    )
    return [f"price {event.get('executedPrice')}, out {out}", f"split {each}", f"tx {event.get('txHash')}"]


#: What each status's event says: (event, order) → its parts, joined by ", ".
DESCRIPTIONS: dict[str, Callable[[dict[str, Any], dict[str, Any]], list[str]]] = {
    S.PENDING: _pending,
    S.WAITING: _waiting,
    S.TRIGGERED: _triggered,
    S.ROUTING: _routing,
    S.BUILDING: _building,
    S.SUBMITTED: _submitted,
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
        legs = _dicts(event.get("legs"))
        where = (
            "split over " + " + ".join(f"{leg.get('dex')} {leg.get('inAmount')} {order.get('tokenIn')}" for leg in legs)
            if len(legs) > 1
            else f"on {event.get('dex')}"
        )
        return (
            f"order {order_id} confirmed: {sold} → {event.get('amountOut')} {order.get('tokenOut')} "
            f"at {event.get('executedPrice')} {where} (tx {event.get('txHash')})"
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
