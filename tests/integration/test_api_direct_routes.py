"""The routes the API serves as plain ASGI (the order submission, the WebSocket streams) answer exactly as
FastAPI would: the same bodies through the declared operation, the contract's error body when Redis fails or
something unexpected happens, log lines with the service and the orderId; and a user socket holds one task."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from loguru import logger
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from websockets.asyncio.client import connect

from services.api.app import create_app
from shared.logging import setup_logging
from shared.settings import Settings
from tests.support.api_process import api_only, asyncio_tasks, open_websockets, server_errors

ORDER = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}
JSON = {"content-type": "application/json"}


@pytest.fixture
def client(redis, settings):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def post_through_fastapi(client: TestClient, **request) -> httpx.Response:
    """POST to the same running app, skipping the direct routes: FastAPI's own stack routes the request."""

    async def framework(scope, receive, send):
        scope["app"] = client.app
        await FastAPI.__call__(client.app, scope, receive, send)

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=framework)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.post("/api/orders/execute", **request)

    return client.portal.call(post)  # on the app's own event loop, where its Redis connections live


@pytest.mark.parametrize(
    ("content", "headers", "status", "error"),
    [
        (b'{"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}', JSON, 200, None),
        (b'{"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1.10}', JSON, 200, None),
        (b"{not json", JSON, 400, "invalid_json"),
        (b"[1, 2]", JSON, 400, "invalid_body"),
        (b'{"tokenIn": "SOL", "tokenOut": "SOL", "amount": "1"}', JSON, 400, None),
        (b'{"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "extra": 1}', JSON, 400, None),
        (b'{"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}', {"content-type": "text/plain"}, 415, None),
        (b'{"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}', {**JSON, "Idempotency-Key": ""}, 400, None),
    ],
)
def test_the_direct_order_route_answers_as_its_fastapi_declaration(client, content, headers, status, error):
    direct = client.post("/api/orders/execute", content=content, headers=headers)
    declared = post_through_fastapi(client, content=content, headers=headers)
    assert direct.status_code == declared.status_code == status, direct.text
    assert direct.headers["content-type"] == declared.headers["content-type"] == "application/json"
    first, second = direct.json(), declared.json()
    if status == 200:
        assert first.keys() == second.keys() == {"success", "orderId", "status", "type", "wsUrl"}
        assert first["orderId"] != second["orderId"] and first["wsUrl"] == f"/ws/orders/{first['orderId']}"
    else:
        assert first == second and first["success"] is False and first["details"] is not None
        assert error is None or first["error"] == error


def test_an_idempotent_replay_through_the_direct_route(client):
    headers = {"Idempotency-Key": "direct-1"}
    first = client.post("/api/orders/execute", json=ORDER, headers=headers)
    again = client.post("/api/orders/execute", json=ORDER, headers=headers)
    assert again.json()["orderId"] == first.json()["orderId"] and again.headers["Idempotent-Replayed"] == "true"
    conflict = client.post("/api/orders/execute", json={**ORDER, "amount": "2"}, headers=headers)
    assert conflict.status_code == 409 and conflict.json()["error"] == "idempotency_conflict"


def test_redis_failing_under_the_order_route_is_a_503_with_retry_after(client, monkeypatch):
    async def down(*args, **kwargs):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(client.app.state.context.store, "create", down)
    response = client.post("/api/orders/execute", json=ORDER)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json() == {
        "success": False,
        "error": "unavailable",
        "message": response.json()["message"],
        "details": [],
    }


def test_an_unexpected_error_in_the_order_route_is_a_500_with_the_contract_body_and_is_logged(client, monkeypatch):
    async def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(client.app.state.context.store, "create", broken)
    log = io.StringIO()
    sink = logger.add(log, level="ERROR")
    try:
        response = client.post("/api/orders/execute", json=ORDER)
    finally:
        logger.remove(sink)
    assert response.status_code == 500 and response.json()["error"] == "internal_error"
    assert "Traceback" not in response.text
    assert "unhandled error on POST /api/orders/execute" in log.getvalue() and "KeyError" in log.getvalue()


def test_the_accepted_line_carries_the_service_and_the_order_id(client, capsys):
    setup_logging("api", Settings(log_json=True, log_flush_ms=0))  # as the API process configures it
    try:
        order_id = client.post("/api/orders/execute", json=ORDER).json()["orderId"]
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    finally:
        logger.remove()
        logger.add(sys.stderr)
        logging.root.handlers.clear()
    (accepted,) = [line for line in lines if line["msg"].startswith("accepted")]
    assert accepted["service"] == "api" and accepted["orderId"] == order_id
    assert accepted["msg"] == "accepted market 1 SOL → USDC"


async def test_a_user_socket_holds_one_task_and_delivers_live(redis_url, database_url, tmp_path):
    """Each open /ws?userId= socket costs the server's own task for it and nothing more (no queue, no sender
    task while quiet); events still reach it, and closing the sockets gives every task back."""
    Redis.from_url(redis_url).flushdb()
    sockets = 40
    with api_only(redis_url, database_url, tmp_path, WS_MAX_PER_CLIENT="0") as api:
        async with httpx.AsyncClient(base_url=api.api_url, timeout=15) as http:
            await http.get("/health")
            before = await asyncio_tasks(http)
            users = [f"one-task-{i}" for i in range(sockets)]
            opened = [await connect(f"{api.ws_url}/ws?userId={user}") for user in users]
            deadline = time.monotonic() + 10
            while await open_websockets(http) < sockets:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert await asyncio_tasks(http) - before == sockets
            body = {**ORDER, "type": "limit", "limitPrice": "1000000", "userId": users[7]}
            order_id = (await http.post("/api/orders/execute", json=body)).json()["orderId"]
            first = json.loads(await asyncio.wait_for(opened[7].recv(), 10))
            assert first["orderId"] == order_id and first["status"] == "pending" and first["seq"] == 1
            for socket in opened:
                await socket.close()
            while (await open_websockets(http), await asyncio_tasks(http)) != (0, before):
                assert time.monotonic() < deadline + 10
                await asyncio.sleep(0.05)
        assert server_errors(api) == []
