"""`order-engine up`: the whole engine on this machine (what `make run` calls); the runner itself is
deploy/local/__main__.py (servers, migrations, every service supervised, Ctrl-C stops them all)."""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli.errors import ExitCode


def up(
    only: Annotated[
        str | None, typer.Option(metavar="NAMES", help="Comma-separated services to run, e.g. api,db-sync.")
    ] = None,
    replicas: Annotated[
        str | None,
        typer.Option(metavar="NAME=N,...", help="Processes per worker, e.g. execution-worker=2,db-sync=2."),
    ] = None,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="Skip the migrations step.")] = False,
) -> None:
    """Run the whole engine here, until Ctrl-C (what `make run` does).

    Redis and PostgreSQL: REDIS_URL / DATABASE_URL, else embedded ones under .data/ (or DATA_DIR),
    started again on the same port or socket if they die.

    Then the migrations, then every service; the API on 127.0.0.1:$API_PORT (8000)."""
    from deploy.local.__main__ import main as run_locally  # the runner's imports only when it runs

    argv = [*(["--only", only] if only else []), *(["--replicas", replicas] if replicas else [])]
    argv += ["--no-migrate"] if no_migrate else []
    try:
        code = run_locally(argv)
    except SystemExit as exc:  # the runner refuses bad --only / --replicas with a message
        if isinstance(exc.code, str):
            typer.echo(f"error: {exc.code}", err=True)
            raise typer.Exit(int(ExitCode.USAGE)) from None
        code = exc.code or 0
    raise typer.Exit(int(code))
