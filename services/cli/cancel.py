"""`order-engine cancel`: cancel a resting order through the API."""

from __future__ import annotations

from typing import Any

import typer

from services.cli.api_client import ApiClient, ApiKeyOption, ApiUrlOption, run_api_command
from services.cli.output import JsonFlag, emit
from services.cli.watch import OrderIdArgument


def cancel(
    order_id: OrderIdArgument,
    api: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a resting limit, sniper or conditional order (exit 1 when it already triggered or ended; 3 when
    unknown)."""

    def work(client: ApiClient) -> dict[str, Any]:
        cancelled: dict[str, Any] = client.delete(f"/api/orders/{order_id}", what="not cancelled")
        return cancelled

    result = run_api_command(as_json, api, api_key, work)
    emit(result, as_json, lambda data: typer.echo(f"order {data['orderId']} {data['status']}"))
