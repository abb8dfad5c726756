"""The `order-engine` command: registers each command group. Later groups (up, submit, watch, orders,
quotes, health) are added here the same way."""

from __future__ import annotations

import typer

from services.cli import dlq, keys

app = typer.Typer(
    name="order-engine",
    help="Operate the DEX order execution engine.",
    no_args_is_help=True,
    add_completion=False,
    # Rich tracebacks print local variables, which can hold secrets (a freshly made API key): never show them.
    pretty_exceptions_enable=False,
)
app.add_typer(dlq.app, name="dlq")
app.add_typer(keys.app, name="keys")


def main() -> None:
    app()
