"""`order-engine health`: the API's liveness (`/health`) and readiness (`/ready`: Redis and PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

import typer

from services.cli.api_client import ApiClient, ApiKeyOption, ApiUrlOption, run_api_command
from services.cli.errors import ExitCode
from services.cli.output import JsonFlag, emit, print_table


def _probe(client: ApiClient, path: str) -> dict[str, Any]:
    started = time.monotonic()
    response = client.request("GET", path, what=f"GET {path}", ok_statuses=(503,))
    try:
        body = response.json()
    except ValueError:
        body = {"status": response.text.strip()[:100]}
    return {
        "httpStatus": response.status_code,
        "latencyMs": round((time.monotonic() - started) * 1000, 1),
        **(body if isinstance(body, dict) else {"status": body}),
    }


def health(api: ApiUrlOption = None, api_key: ApiKeyOption = None, as_json: JsonFlag = False) -> None:
    """Is the API up (`/health`) and ready (`/ready`: Redis and PostgreSQL answer)? Exit 4 when not ready."""

    def work(client: ApiClient) -> dict[str, Any]:
        live, ready = _probe(client, "/health"), _probe(client, "/ready")
        ok = live["httpStatus"] == 200 and ready["httpStatus"] == 200
        return {"api": client.shown_url, "ok": ok, "health": live, "ready": ready}

    report = run_api_command(as_json, api, api_key, work)
    emit(report, as_json, _print_report)
    if not report["ok"]:
        down = [
            f"{name} {value}"
            for name, value in report["ready"].items()
            if isinstance(value, str) and value.startswith("down")
        ]
        reason = f": {', '.join(down)}" if down else f" (/ready answered HTTP {report['ready']['httpStatus']})"
        typer.echo(f"error: the API at {report['api']} is not ready{reason}", err=True)
        raise typer.Exit(int(ExitCode.UNAVAILABLE))


def _print_report(report: dict[str, Any]) -> None:
    live, ready = report["health"], report["ready"]
    rows = [
        {"check": "api", "status": live.get("status"), "detail": f"{report['api']} /health {live['latencyMs']} ms"},
        {"check": "ready", "status": ready.get("status"), "detail": f"/ready {ready['latencyMs']} ms"},
    ]
    rows += [
        {"check": name, "status": value, "detail": ""}
        for name, value in ready.items()
        if name not in ("status", "httpStatus", "latencyMs")
    ]
    print_table(rows, (("CHECK", "check"), ("STATUS", "status"), ("DETAIL", "detail")))
