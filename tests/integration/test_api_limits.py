"""Every per-client limit of the API, enforced: body size on every route, the Redis-backed rate limit
(shared by replicas, per API key, probes exempt, 0 = off), back-pressure from the execution queue, and the
cap on open WebSockets. The app is the real one, in-process, on the suite's Redis and PostgreSQL."""

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from services.api.app import create_app
from shared.auth.api_keys import hash_key, new_secret
from tests.support.api_process import api_only

ORDER = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}


@pytest.fixture
def make_client(redis, settings):
    """A TestClient on an app with some settings changed; the `redis` fixture emptied Redis first."""
    clients = []

    def make(**changes) -> TestClient:
        client = TestClient(create_app(settings.model_copy(update=changes)))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body == {"success": False, "error": code, "message": body["message"], "details": []}
    assert body["message"]


def chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b" " * min(size, total - start)


def test_every_route_refuses_a_body_over_the_limit_with_413(make_client):
    client = make_client(max_body_bytes=1024)
    order_id = uuid.uuid4()
    over = b"{" + b" " * 2000 + b"}"
    for method, path in [
        ("POST", "/api/orders/execute"),
        ("GET", "/api/orders"),
        ("GET", f"/api/orders/{order_id}"),
        ("DELETE", f"/api/orders/{order_id}"),
        ("GET", "/api/quotes/SOL-USDC"),
        ("PUT", "/nowhere"),
    ]:
        response = client.request(method, path, content=over, headers={"content-type": "application/json"})
        assert_error(response, 413, "body_too_large")
    streamed = client.post(
        "/api/orders/execute", content=chunks(2000), headers={"content-type": "application/json"}
    )  # no Content-Length: counted as it is read
    assert_error(streamed, 413, "body_too_large")
    assert client.post("/api/orders/execute", json=ORDER).status_code == 200  # under the limit: served
    assert 'engine_requests_refused_total{reason="body_too_large"} 7.0' in client.get("/metrics").text


def test_the_rate_limit_answers_429_with_retry_after_and_spares_the_probes(make_client):
    client = make_client(rate_limit_per_s=5, rate_limit_window_s=1)
    statuses = [client.get(f"/api/orders/{uuid.uuid4()}").status_code for _ in range(12)]
    assert statuses[:5] == [404] * 5 and statuses[-1] == 429
    refused = client.get("/api/orders")
    assert_error(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "1"  # whole seconds, at most the window
    for probe in ("/health", "/ready", "/metrics"):
        assert all(client.get(probe).status_code == 200 for _ in range(10)), probe
    assert 'engine_requests_refused_total{reason="rate_limited"}' in client.get("/metrics").text


def test_replicas_share_one_allowance_through_redis(make_client):
    replicas = [make_client(rate_limit_per_s=6, rate_limit_window_s=1) for _ in range(2)]
    statuses = [replicas[i % 2].get("/api/orders/not-a-uuid").status_code for i in range(12)]
    assert statuses.count(400) <= 7 and statuses.count(429) >= 5  # one client, one allowance, two processes


def test_zero_turns_the_rate_limit_off(make_client):
    client = make_client(rate_limit_per_s=0)
    assert {client.get("/api/orders/not-a-uuid").status_code for _ in range(50)} == {400}


def test_a_valid_api_key_has_an_allowance_of_its_own(make_client):
    alice, bob = new_secret(), new_secret()
    keys = f"alice:user:{hash_key(alice)},bob:user:{hash_key(bob)}"
    client = make_client(rate_limit_per_s=3, rate_limit_window_s=1, auth_enabled=True, api_keys=keys)

    def statuses(headers: dict[str, str]) -> list[int]:
        return [client.get("/api/orders/not-a-uuid", headers=headers).status_code for _ in range(5)]

    assert statuses({"Authorization": f"Bearer {alice}"})[-1] == 429
    assert statuses({"Authorization": f"Bearer {bob}"})[:3] == [400] * 3  # same address, another key
    unknown = statuses({"Authorization": f"Bearer {new_secret()}"})  # an unknown key counts as its address
    assert unknown[-1] == 429


def test_a_full_execution_queue_answers_503_with_retry_after(make_client):
    client = make_client(max_queue_depth=2)  # and no execution worker drains it
    accepted = [client.post("/api/orders/execute", json=ORDER).status_code for _ in range(2)]
    assert accepted == [200, 200]
    overloaded = client.post("/api/orders/execute", json=ORDER)
    assert_error(overloaded, 503, "overloaded")
    assert int(overloaded.headers["Retry-After"]) >= 1
    resting = {**ORDER, "type": "limit", "limitPrice": "1000000"}
    assert client.post("/api/orders/execute", json=resting).status_code == 200  # resting orders do not queue


def test_open_websockets_per_client_are_capped_with_close_4429(make_client):
    client = make_client(ws_max_per_client=2)
    with (
        client.websocket_connect("/ws?userId=a"),
        client.websocket_connect("/ws?userId=b"),
        client.websocket_connect("/ws?userId=c") as refused,
    ):
        message = refused.receive_json(mode="binary")
        assert message["type"] == "error" and message["error"] == "too_many_websockets"
        with pytest.raises(WebSocketDisconnect) as closed:
            refused.receive_bytes()
        assert closed.value.code == 4429
    with client.websocket_connect("/ws?userId=a"), client.websocket_connect("/ws?userId=b"):
        pass  # both closed above: the client may open two again
    assert 'engine_requests_refused_total{reason="too_many_websockets"} 1.0' in client.get("/metrics").text


async def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy(redis, redis_url, database_url, tmp_path):
    import httpx

    async def statuses(api, forwarded_for: list[str]) -> list[int]:
        async with httpx.AsyncClient(base_url=api.api_url) as http:
            return [
                (await http.get("/api/orders/not-a-uuid", headers={"X-Forwarded-For": ip})).status_code
                for ip in forwarded_for
            ]

    spoofed = [f"203.0.113.{i}" for i in range(8)]
    tight = {"RATE_LIMIT_PER_S": "3", "RATE_LIMIT_WINDOW_S": "1"}
    with api_only(redis_url, database_url, tmp_path / "untrusted", **tight) as api:
        assert (await statuses(api, spoofed))[-1] == 429  # a header the client sets does not buy a new allowance
    await redis.flushdb()
    with api_only(redis_url, database_url, tmp_path / "trusted", FORWARDED_ALLOW_IPS="127.0.0.1", **tight) as api:
        assert set(await statuses(api, spoofed)) == {400}  # the trusted proxy names eight clients
        assert (await statuses(api, ["198.51.100.7"] * 8))[-1] == 429


async def test_a_websocket_message_over_ws_max_message_bytes_closes_with_1009(redis, redis_url, database_url, tmp_path):
    from websockets.asyncio.client import connect

    with api_only(redis_url, database_url, tmp_path, WS_MAX_MESSAGE_BYTES="1024") as api:
        async with connect(f"{api.ws_url}/ws?userId=sizes") as socket:
            await socket.send("x" * 1024)
            await asyncio.wait_for(await socket.ping(), 10)  # at the limit: still open
            await socket.send("x" * 1025)
            await asyncio.wait_for(socket.wait_closed(), 10)
        assert socket.close_code == 1009
