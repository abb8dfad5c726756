"""Printing results: JSON for scripts (`--json`), aligned plain text for people, errors on stderr."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any

import orjson
import typer

from services.cli.errors import CliError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of text.")]

#: Text cells are cut to this many characters so one row stays on one line.
MAX_CELL = 60


def print_json(data: Any) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def print_json_line(data: Any) -> None:
    """One object on one line, flushed at once (NDJSON: a script reads each line as it comes)."""
    typer.echo(orjson.dumps(data).decode())


def emit(data: Any, as_json: bool, text: Callable[[Any], None]) -> None:
    if as_json:
        print_json(data)
    else:
        text(data)


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
    """`columns`: (heading, key) pairs."""
    cells = [[heading for heading, _ in columns]]
    cells += [[_cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def error_view(error: CliError) -> dict[str, Any]:
    view: dict[str, Any] = {"success": False, "error": error.code, "message": error.message}
    if error.status is not None:
        view["status"] = error.status
    if error.details:
        view["details"] = error.details
    return view


def fail(error: CliError, as_json: bool, *, one_line: bool = False) -> typer.Exit:
    """Report the error (stderr; also stdout as JSON with --json) and return the Exit to raise.

    `one_line`: the command prints NDJSON, so the error is one more line, `{"type": "error", ...}` (the shape
    of the API's own WebSocket error messages)."""
    if as_json and one_line:
        print_json_line({"type": "error", **error_view(error)})
    elif as_json:
        print_json(error_view(error))
    typer.echo(f"error: {error.message}", err=True)
    return typer.Exit(int(error.exit_code))
