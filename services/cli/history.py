"""`order-engine orders`: order history from PostgreSQL through the API, a page at a time or every page."""

from __future__ import annotations

import shlex
from typing import Annotated, Any

import typer

from services.cli.api_client import ApiClient, ApiKeyOption, ApiUrlOption, run_api_command
from services.cli.output import JsonFlag, emit, print_table
from shared.domain.lifecycle import OrderStatus
from shared.domain.order_types import OrderType

DEFAULT_HISTORY_LIMIT = 20
MAX_HISTORY_LIMIT = 500

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

#: The API's query parameter → this command's option, in the order the `more:` line repeats them.
FILTER_OPTIONS = (
    ("status", "status"),
    ("type", "type"),
    ("userId", "user-id"),
    ("tokenIn", "token-in"),
    ("tokenOut", "token-out"),
)


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
        return fetch_history(client, filters, limit=limit, cursor=cursor, all_pages=all_pages)

    emit(run_api_command(as_json, api, api_key, work), as_json, lambda data: _print_history(data, filters, limit))


def fetch_history(
    client: ApiClient, filters: dict[str, Any], *, limit: int, cursor: str | None, all_pages: bool
) -> dict[str, Any]:
    """The page after `cursor`, or with `all_pages` every page from there on, as one page."""
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
        # A cursor that does not move would page forever.
        if not all_pages or not page_cursor or page_cursor == previous:
            return {"orders": rows, "nextCursor": page_cursor, "count": len(rows)}


def resting_terms(order: dict[str, Any]) -> str | None:
    """A resting order's price terms in a few characters: `limit 155`, `stop 140`, `tp 165 / stop 140`,
    `trail 300 bps` (`from 160` with an activation price); None for an order without any."""
    if order.get("limitPrice") is not None:
        return f"limit {order['limitPrice']}"
    if order.get("takeProfitPrice") is not None:
        return f"tp {order['takeProfitPrice']} / stop {order.get('stopPrice')}"
    if order.get("stopPrice") is not None:
        return f"stop {order['stopPrice']}"
    if order.get("trailBps") is not None:
        activation = order.get("activationPrice")
        return f"trail {order['trailBps']} bps" + ("" if activation is None else f" from {activation}")
    return None


def _history_row(order: dict[str, Any]) -> dict[str, Any]:
    price = order.get("executedPrice")
    if price is None:
        price = resting_terms(order)
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
        typer.echo(f"more: {next_page_command(data['nextCursor'], filters, limit)}")


def next_page_command(next_cursor: str, filters: dict[str, Any], limit: int) -> str:
    """The command line that prints the next page with the same filters."""
    given = [(option, filters[parameter]) for parameter, option in FILTER_OPTIONS]
    given.append(("limit", limit if limit != DEFAULT_HISTORY_LIMIT else None))
    options = " ".join(f"--{name} {shlex.quote(str(value))}" for name, value in given if value is not None)
    next_page = f"--cursor {shlex.quote(next_cursor)}"
    return f"order-engine orders {options + ' ' if options else ''}{next_page}"
