"""The `order-engine` command: registers each command and command group.

`up` runs the engine; `submit`, `watch`, `cancel`, `orders`, `quotes` and `health` talk to the API over HTTP
and its WebSocket (like any client: --api, --api-key); `dlq` and `keys` talk to Redis directly, and are
imported only when one of them runs (they bring redis, dramatiq and the order store: a second of start-up)."""

from __future__ import annotations

import importlib

import typer

# Typer ships its own copy of click: its groups take and return that copy's types, not the click package's.
from typer import _click as click
from typer.core import TyperGroup

from services.cli import cancel, health, history, quotes, submit, up, watch

EXIT_CODES = (
    "Exit codes: 0 ok (an order confirmed); 1 refused or failed (an invalid order, any other 4xx); 2 wrong "
    "usage; 3 not found; 4 Redis or the API unreachable (or 5xx, or not ready); 5 timed out; 6 the order "
    "failed; 7 cancelled; 8 expired; 130 interrupted."
)

#: Command groups loaded when used: name → module holding a Typer `app`.
LAZY_GROUPS = {"dlq": "services.cli.dlq", "keys": "services.cli.keys"}


class Commands(TyperGroup):
    """The registered commands, plus LAZY_GROUPS, imported on first use (or for the full --help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *LAZY_GROUPS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_GROUPS:
            group = typer.main.get_group(importlib.import_module(LAZY_GROUPS[cmd_name]).app)
            group.name = cmd_name
            return group
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="order-engine",
    cls=Commands,
    help=f"Operate the DEX order execution engine.\n\n{EXIT_CODES}",
    no_args_is_help=True,
    add_completion=False,
    # Rich tracebacks print local variables, which can hold secrets (a freshly made API key): never show them.
    pretty_exceptions_enable=False,
)
app.command()(up.up)
app.command()(submit.submit)
app.command()(watch.watch)
app.command()(cancel.cancel)
app.command()(history.orders)
app.command()(quotes.quotes)
app.command()(health.health)


def main() -> None:
    app()
