"""`order-engine watch`: follow an order through the API's WebSocket until it ends; `submit` follows the order
it placed the same way (services/cli/follow.py follows the socket, services/cli/display.py shows each event)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import typer

from services.cli.api_client import ApiClient, ApiKeyOption, ApiUrlOption, run_api_command
from services.cli.display import JsonLines, LiveDisplay, condition_text, summary
from services.cli.errors import CliError, ExitCode
from services.cli.follow import Outcome, follow

OrderIdArgument = Annotated[UUID, typer.Argument(help="The order's id.", show_default=False)]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0,
        metavar="SECONDS",
        show_default=False,
        help="Give up watching after this long (exit 5; the order carries on). Default: until it ends.",
    ),
]


def headline(order: dict[str, Any]) -> str:
    """`limit: sell 2 SOL for USDC at 155 or better`; `stop: sell 2 SOL for USDC when the BEST price is ≤ 140
    (stop)`."""
    text = f"{order.get('type')}: sell {order.get('amount')} {order.get('tokenIn')} for {order.get('tokenOut')}"
    if order.get("limitPrice") is not None:
        text += f" at {order['limitPrice']} or better"
    if (condition := condition_text(order)) is not None:
        text += f" when {condition}"
    trigger = order.get("trigger") or {}
    if trigger.get("kind") == "listing":
        text += " when a pool lists the pair"
    elif trigger.get("kind") == "liquidity":
        text += f" when a pool holds {trigger.get('minLiquidity')} {order.get('tokenOut')}"
    if order.get("slippageBps") is not None:
        text += f", slippage {order['slippageBps']} bps"
    if order.get("expiresAt"):
        text += f", expires {order['expiresAt']}"
    return text


#: What a resting order waits for, as its `waiting` event carries it.
RESTING_TERMS = ("limitPrice", "trigger", "stopPrice", "takeProfitPrice", "trailBps", "activationPrice")


def with_resting_terms(order: dict[str, Any]) -> dict[str, Any]:
    """The order's state with its resting terms (limitPrice, trigger, a conditional order's fields), from its
    `waiting` event when the state lacks them (the live state in Redis does not repeat them; the archived one in
    PostgreSQL does)."""
    for event in order.get("events") or ():
        if event.get("status") == "waiting":
            for name in RESTING_TERMS:
                if order.get(name) is None and event.get(name) is not None:
                    order[name] = event[name]
    return order


def trail_now(order: dict[str, Any]) -> str:
    """Where a waiting trailing stop stands (GET /api/orders/{id} adds `armed`, `highWaterMark`, `stopLevel`);
    empty for every other order."""
    if order.get("armed") is None:
        return ""
    if not order["armed"]:
        return ", not armed yet"
    if order.get("stopLevel") is None:
        return ", armed"
    return f", armed: high {order.get('highWaterMark')}, stop level {order['stopLevel']}"


def show_lifecycle(
    client: ApiClient,
    order: dict[str, Any],
    *,
    as_json: bool,
    after: int = 0,
    timeout_s: float | None = None,
) -> Outcome:
    """Follow the order, showing each event; Ctrl-C stops watching (exit 130), not the order."""
    order_id = str(order["orderId"])
    view = JsonLines() if as_json else LiveDisplay(order)
    try:
        with view:
            return follow(client, order_id, view.event, after=after, timeout_s=timeout_s)
    except KeyboardInterrupt:
        raise CliError(
            f"stopped watching order {order_id}; it carries on: `order-engine watch {order_id}` follows it",
            ExitCode.INTERRUPTED,
            "interrupted",
        ) from None


def finish(order: dict[str, Any], outcome: Outcome, as_json: bool) -> None:
    """The last line (stdout when confirmed, stderr otherwise) and the outcome's exit code."""
    if not as_json:
        typer.echo(summary(order, outcome), err=outcome.exit_code is not ExitCode.OK)
    if outcome.exit_code is not ExitCode.OK:
        raise typer.Exit(int(outcome.exit_code))


def watch(
    order_id: OrderIdArgument,
    after: Annotated[
        int, typer.Option(min=0, metavar="SEQ", help="Only events after this seq (resume where you left off).")
    ] = 0,
    timeout: TimeoutOption = None,
    api: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="NDJSON: every event as the API sends it.")] = False,
) -> None:
    """Follow an order: its events so far, then live ones, until it ends. Exit codes as for submit."""

    def work(client: ApiClient) -> tuple[dict[str, Any], Outcome]:
        order = with_resting_terms(client.get(f"/api/orders/{order_id}", what=""))
        if not as_json:
            typer.echo(f"order {order_id} {headline(order)}; now {order.get('status')}{trail_now(order)}")
        return order, show_lifecycle(client, order, as_json=as_json, after=after, timeout_s=timeout)

    order, outcome = run_api_command(as_json, api, api_key, work, one_line=True)
    finish(order, outcome, as_json)
