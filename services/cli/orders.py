"""`order-engine submit | watch | cancel | orders`: orders through the API (HTTP and its WebSocket), exactly as
any client places and follows them; nothing here reads Redis.

`submit` checks an order here first with the API's own request model (shared/domain/orders.py), so a typo
gets the API's message without a round trip; the API stays the authority (pairs that are not listed or not
streamed, Idempotency-Key reuse, limits, keys), and its refusal is shown as it gave it."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import typer

from services.cli.api_client import ApiClient, ApiKeyOption, ApiUrlOption, run_api_command
from services.cli.errors import CliError, ExitCode
from services.cli.follow import JsonLines, LiveDisplay, Outcome, follow, summary
from services.cli.output import JsonFlag, emit, print_json_line, print_table
from services.cli.parsing import parse_duration_s
from shared.domain import idempotency
from shared.domain.events import iso_utc
from shared.domain.lifecycle import OrderStatus
from shared.domain.order_types import OrderType  # without pydantic: only submit loads the request model

DEFAULT_HISTORY_LIMIT = 20
MAX_HISTORY_LIMIT = 500

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

HISTORY_COLUMNS = (
    ("CREATED", "createdAt"),
    ("ORDER ID", "orderId"),
    ("TYPE", "type"),
    ("STATUS", "status"),
    ("PAIR", "pair"),
    ("AMOUNT", "amount"),
    ("PRICE", "price"),
    ("OUT", "amountOut"),
    ("DEX", "dex"),
    ("ERROR", "error"),
)


# --- submit -------------------------------------------------------------------------------------------------


def order_body(
    token_in: str,
    token_out: str,
    amount: str,
    *,
    order_type: OrderType | None = None,
    limit_price: str | None = None,
    listing: bool = False,
    min_liquidity: str | None = None,
    slippage_bps: int | None = None,
    slippage: str | None = None,
    expires_at: str | None = None,
    user_id: str | None = None,
    client_order_id: str | None = None,
) -> dict[str, Any]:
    """The contract's request body for these options; the type follows from them unless given."""
    if listing and min_liquidity is not None:
        raise typer.BadParameter("a sniper order waits for --listing or --min-liquidity, not both")
    trigger = {"kind": "listing"} if listing else None
    if min_liquidity is not None:
        trigger = {"kind": "liquidity", "minLiquidity": min_liquidity}
    if order_type is None:
        order_type = OrderType.LIMIT if limit_price is not None else OrderType.SNIPER if trigger else OrderType.MARKET
    fields = {
        "type": order_type.value,
        "tokenIn": token_in,
        "tokenOut": token_out,
        "amount": amount,
        "slippageBps": slippage_bps,
        "slippage": slippage,
        "limitPrice": limit_price,
        "trigger": trigger,
        "expiresAt": expires_at,
        "userId": user_id,
        "clientOrderId": client_order_id,
    }
    return {name: value for name, value in fields.items() if value is not None}


def check_order(body: dict[str, Any], idempotency_key: str | None) -> None:
    """The API's own checks, here (the same model, the same messages); raises CliError like its 400."""
    problem = None if idempotency_key is None else idempotency.client_key_problem(idempotency_key)
    if problem is not None:
        raise _invalid("invalid_idempotency_key", problem)
    from pydantic import ValidationError

    from shared.domain.orders import OrderRequest  # the API's model (and pydantic): only submit needs them

    try:
        OrderRequest.model_validate(body)
    except ValidationError as exc:
        details = [
            {
                "field": ".".join(str(part) for part in error.get("loc", ())) or None,
                "code": error.get("type"),
                "message": error.get("msg"),
            }
            for error in exc.errors()
        ]
        code = details[0]["code"] if len(details) == 1 and details[0]["code"] else "validation_error"
        message = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else str(d["message"]) for d in details)
        raise _invalid(code, message or "invalid order", details) from None


def _invalid(code: str, message: str, details: list[dict[str, Any]] | None = None) -> CliError:
    return CliError(
        f"invalid order: {message} ({code}; checked here, not sent: --no-check sends it to the API as it is)",
        ExitCode.FAILED,
        code,
        details=details,
    )


def expiry(expires_at: str | None, expires_in: str | None) -> str | None:
    if expires_at is not None and expires_in is not None:
        raise typer.BadParameter("give --expires-at or --expires-in, not both")
    if expires_in is not None:
        seconds = parse_duration_s(expires_in)
        return iso_utc(datetime.now(UTC) + timedelta(seconds=seconds))
    return expires_at


def _headline(order: dict[str, Any]) -> str:
    """`limit: sell 2 SOL for USDC at 155 or better`."""
    text = f"{order.get('type')}: sell {order.get('amount')} {order.get('tokenIn')} for {order.get('tokenOut')}"
    if order.get("limitPrice") is not None:
        text += f" at {order['limitPrice']} or better"
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


def with_resting_terms(order: dict[str, Any]) -> dict[str, Any]:
    """The order's state with its limitPrice / trigger, from its `waiting` event when the state lacks them
    (the live state in Redis does not repeat them; the archived one in PostgreSQL does)."""
    for event in order.get("events") or ():
        if event.get("status") == "waiting":
            for name in ("limitPrice", "trigger"):
                if order.get(name) is None and event.get(name) is not None:
                    order[name] = event[name]
    return order


def _show_lifecycle(
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


def _finish(order: dict[str, Any], outcome: Outcome, as_json: bool) -> None:
    """The last line (stdout when confirmed, stderr otherwise) and the outcome's exit code."""
    if not as_json:
        typer.echo(summary(order, outcome), err=outcome.exit_code is not ExitCode.OK)
    if outcome.exit_code is not ExitCode.OK:
        raise typer.Exit(int(outcome.exit_code))


def submit(
    token_in: Annotated[str, typer.Argument(help="Token to sell: a symbol (SOL, USDC, …) or a mint address.")],
    token_out: Annotated[str, typer.Argument(help="Token to buy.")],
    amount: Annotated[str, typer.Argument(help="How much TOKEN_IN to sell, as a decimal (1.5).")],
    order_type: Annotated[
        OrderType | None,
        typer.Option(
            "--type",
            case_sensitive=False,
            show_default=False,
            help="market, limit or sniper. Default: limit with --limit-price, sniper with --listing or "
            "--min-liquidity, else market.",
        ),
    ] = None,
    limit_price: Annotated[
        str | None,
        typer.Option(help="Limit order: sell once the BEST price of TOKEN_IN in TOKEN_OUT reaches this."),
    ] = None,
    listing: Annotated[
        bool, typer.Option("--listing", help="Sniper order: fire when a pool for the pair appears.")
    ] = False,
    min_liquidity: Annotated[
        str | None, typer.Option(help="Sniper order: fire when a pool holds this much TOKEN_OUT.")
    ] = None,
    slippage_bps: Annotated[
        int | None, typer.Option(help="Largest shortfall from the quote, in basis points (0-5000; API: 50).")
    ] = None,
    slippage: Annotated[
        str | None, typer.Option(help="The same as a fraction (0.01 = 100 bps); must agree with --slippage-bps.")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option(help="Limit/sniper: expire at this RFC 3339 time (at most 7 days away by default).")
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Limit/sniper: expire this long from now (90s, 15m, 24h, 7d).")
    ] = None,
    user_id: Annotated[str | None, typer.Option(help="Owner tag (userId, ≤ 64 characters).")] = None,
    client_order_id: Annotated[
        str | None, typer.Option(help="Your own id for the order (≤ 64), echoed in every event.")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Idempotency-Key: re-running with the same key and order returns the same order."),
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the order id and return at once.")] = False,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Send the order without checking it here first.")
    ] = False,
    timeout: TimeoutOption = None,
    api: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="NDJSON: an `accepted` line, then every event as the API sends it.")
    ] = False,
) -> None:
    """Submit an order, then follow it live until it ends.

    Market by default; limit with --limit-price; sniper with --listing or --min-liquidity.

    Exit 0 when it is confirmed; 6 failed, 7 cancelled, 8 expired; 1 refused (by the API, or checked here).
    """
    body = order_body(
        token_in,
        token_out,
        amount,
        order_type=order_type,
        limit_price=limit_price,
        listing=listing,
        min_liquidity=min_liquidity,
        slippage_bps=slippage_bps,
        slippage=slippage,
        expires_at=expiry(expires_at, expires_in),
        user_id=user_id,
        client_order_id=client_order_id,
    )

    def work(client: ApiClient) -> tuple[dict[str, Any], Outcome | None]:
        if not no_check:
            check_order(body, idempotency_key)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        response = client.post("/api/orders/execute", body, headers=headers, what="the API refused the order")
        accepted = response.json()
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        order = {**body, **accepted}
        if as_json:
            print_json_line(
                {**accepted, "type": "accepted", "orderType": accepted.get("type"), "idempotentReplayed": replayed}
            )
        elif no_wait:
            typer.echo(accepted["orderId"])
            if replayed:
                typer.echo("this Idempotency-Key was used before: that is the order it placed", err=True)
        else:
            note = " before (this Idempotency-Key placed it)" if replayed else ""
            typer.echo(f"order {accepted['orderId']} accepted{note}: {_headline(order)}")
        if no_wait:
            return order, None
        return order, _show_lifecycle(client, order, as_json=as_json, timeout_s=timeout)

    order, outcome = run_api_command(as_json, api, api_key, work, one_line=True)
    if outcome is not None:
        _finish(order, outcome, as_json)


# --- watch, cancel ----------------------------------------------------------------------------------------


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
            typer.echo(f"order {order_id} {_headline(order)}; now {order.get('status')}")
        return order, _show_lifecycle(client, order, as_json=as_json, after=after, timeout_s=timeout)

    order, outcome = run_api_command(as_json, api, api_key, work, one_line=True)
    _finish(order, outcome, as_json)


def cancel(
    order_id: OrderIdArgument,
    api: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a resting limit or sniper order (exit 1 when it already triggered or ended; 3 when unknown)."""

    def work(client: ApiClient) -> dict[str, Any]:
        return client.delete(f"/api/orders/{order_id}", what="not cancelled")

    result = run_api_command(as_json, api, api_key, work)
    emit(result, as_json, lambda data: typer.echo(f"order {data['orderId']} {data['status']}"))


# --- orders (history) -------------------------------------------------------------------------------------


def orders(
    status: Annotated[OrderStatus | None, typer.Option(case_sensitive=False, help="Only this status.")] = None,
    order_type: Annotated[
        OrderType | None, typer.Option("--type", case_sensitive=False, help="Only this type.")
    ] = None,
    user_id: Annotated[str | None, typer.Option(help="Only this userId.")] = None,
    token_in: Annotated[str | None, typer.Option(help="Only orders selling this token.")] = None,
    token_out: Annotated[str | None, typer.Option(help="Only orders buying this token.")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_HISTORY_LIMIT, help="Orders per page, newest first.")
    ] = DEFAULT_HISTORY_LIMIT,
    cursor: Annotated[str | None, typer.Option(help="The page after this one (printed under a full page).")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Every page, following the cursor to the end.")] = False,
    api: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Order history from PostgreSQL (through the API), newest first, with the API's filters."""
    filters = {
        "status": status.value if status else None,
        "type": order_type.value if order_type else None,
        "userId": user_id,
        "tokenIn": token_in,
        "tokenOut": token_out,
    }

    def work(client: ApiClient) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        page_cursor = cursor
        while True:
            page = client.get(
                "/api/orders",
                params={**filters, "limit": limit, "cursor": page_cursor},
                what="the API refused the history query",
            )
            rows += page["orders"]
            previous, page_cursor = page_cursor, page.get("nextCursor")
            if not all_pages or not page_cursor or page_cursor == previous:
                return {"orders": rows, "nextCursor": page_cursor, "count": len(rows)}

    emit(run_api_command(as_json, api, api_key, work), as_json, lambda data: _print_history(data, filters, limit))


def _history_row(order: dict[str, Any]) -> dict[str, Any]:
    price = order.get("executedPrice")
    if price is None and order.get("limitPrice") is not None:
        price = f"limit {order['limitPrice']}"
    error = order.get("error")
    return {
        **order,
        "pair": f"{order.get('tokenIn')}-{order.get('tokenOut')}",
        "price": price,
        "error": f"{error}: {order.get('errorMessage')}" if error and order.get("errorMessage") else error,
    }


def _print_history(data: dict[str, Any], filters: dict[str, Any], limit: int) -> None:
    if not data["orders"]:
        typer.echo("no orders")
    else:
        print_table([_history_row(order) for order in data["orders"]], HISTORY_COLUMNS)
    if data["nextCursor"]:
        options = " ".join(
            f"--{name} {shlex.quote(str(value))}"
            for name, value in (
                ("status", filters["status"]),
                ("type", filters["type"]),
                ("user-id", filters["userId"]),
                ("token-in", filters["tokenIn"]),
                ("token-out", filters["tokenOut"]),
                ("limit", limit if limit != DEFAULT_HISTORY_LIMIT else None),
            )
            if value is not None
        )
        next_page = f"--cursor {shlex.quote(data['nextCursor'])}"
        typer.echo(f"more: order-engine orders {options + ' ' if options else ''}{next_page}")
