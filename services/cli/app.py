"""The `order-engine` command: registers each command group and command.

`up` runs the engine; `submit`, `watch`, `cancel`, `orders`, `quotes` and `health` talk to the API over HTTP
and its WebSocket (like any client: --api, --api-key); `dlq` and `keys` talk to Redis directly."""

from __future__ import annotations

import typer

from services.cli import dlq, health, keys, orders, quotes, up

EXIT_CODES = (
    "Exit codes: 0 ok (an order confirmed); 1 refused or failed (an invalid order, any other 4xx); 2 wrong "
    "usage; 3 not found; 4 Redis or the API unreachable (or 5xx, or not ready); 5 timed out; 6 the order "
    "failed; 7 cancelled; 8 expired; 130 interrupted."
)

app = typer.Typer(
    name="order-engine",
    help=f"Operate the DEX order execution engine.\n\n{EXIT_CODES}",
    no_args_is_help=True,
    add_completion=False,
    # Rich tracebacks print local variables, which can hold secrets (a freshly made API key): never show them.
    pretty_exceptions_enable=False,
)
app.command()(up.up)
app.command()(orders.submit)
app.command()(orders.watch)
app.command()(orders.cancel)
app.command()(orders.orders)
app.command()(quotes.quotes)
app.command()(health.health)
app.add_typer(dlq.app, name="dlq")
app.add_typer(keys.app, name="keys")


def main() -> None:
    app()
