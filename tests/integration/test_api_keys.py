"""Access control with API keys enabled: a key sees, cancels and streams only its own orders; admin routes
need an admin key; no secret reaches a log line. (With keys disabled every other test is the proof that the
engine behaves as the contract says.)"""

from __future__ import annotations

import io

import pytest
import redis as sync_redis
from fastapi.testclient import TestClient
from loguru import logger
from starlette.websockets import WebSocketDisconnect

from services.api.app import create_app
from shared import redis_keys
from shared.auth.api_keys import KeyRing, Role, hash_key, new_secret, parse_configured
from shared.persistence.batch import make_engine, persist_batch

RESTING_LIMIT = {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": "999999"}


@pytest.fixture
async def keys(redis):
    """Alice (configured in settings), bob and an admin (made at run time, as the CLI makes them)."""
    ring = KeyRing(redis)
    bob, _ = await ring.create("bob", Role.USER)
    admin, _ = await ring.create("ops", Role.ADMIN)
    return {"alice": new_secret(), "bob": bob, "admin": admin}


@pytest.fixture
def client(settings, keys):
    configured = f"alice:user:{hash_key(keys['alice'])}"
    app = create_app(settings.model_copy(update={"auth_enabled": True, "api_keys": configured}))
    log = io.StringIO()
    sink = logger.add(log, level="DEBUG")
    with TestClient(app) as test_client:
        test_client.log = log
        yield test_client
    logger.remove(sink)
    for secret in keys.values():
        assert secret not in log.getvalue()


def as_(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def place(client, key, body=RESTING_LIMIT, **headers) -> str:
    response = client.post("/api/orders/execute", json=body, headers={**as_(key), **headers})
    assert response.status_code == 200, response.text
    return response.json()["orderId"]


def test_no_key_or_an_unknown_key_is_401_with_the_contract_body(client):
    for headers in ({}, as_(new_secret()), {"Authorization": "Bearer nonsense"}, {"X-API-Key": "oek_x"}):
        response = client.post("/api/orders/execute", json=RESTING_LIMIT, headers=headers)
        assert response.status_code == 401
        assert response.json()["success"] is False and response.json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/orders").status_code == 401
    assert client.get("/health").status_code == 200  # probes stay open


def test_a_key_reads_and_cancels_only_its_own_orders(client, keys):
    order_id = place(client, keys["alice"])
    assert client.get(f"/api/orders/{order_id}", headers=as_(keys["bob"])).status_code == 404
    assert client.delete(f"/api/orders/{order_id}", headers=as_(keys["bob"])).status_code == 404
    assert client.get(f"/api/orders/{order_id}", headers=as_(keys["alice"])).json()["status"] == "waiting"
    assert client.get(f"/api/orders/{order_id}", headers={"X-API-Key": keys["admin"]}).status_code == 200
    cancelled = client.delete(f"/api/orders/{order_id}", headers=as_(keys["alice"]))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_idempotency_keys_are_per_api_key(client, keys):
    first = place(client, keys["alice"], **{"Idempotency-Key": "same"})
    again = client.post(
        "/api/orders/execute", json=RESTING_LIMIT, headers={**as_(keys["alice"]), "Idempotency-Key": "same"}
    )
    assert again.json()["orderId"] == first and again.headers["Idempotent-Replayed"] == "true"
    other = place(client, keys["bob"], **{"Idempotency-Key": "same"})
    assert other != first


def test_history_lists_only_the_callers_orders_and_archived_orders_stay_private(client, keys, redis_url, database_url):
    mine = place(client, keys["alice"])
    theirs = place(client, keys["bob"])
    entries = sync_redis.Redis.from_url(redis_url).xrange(redis_keys.events_stream(0))
    persist_batch(make_engine(database_url), entries)
    listed = {
        row["orderId"] for row in client.get("/api/orders?limit=500", headers=as_(keys["alice"])).json()["orders"]
    }
    assert mine in listed and theirs not in listed
    everyone = client.get("/api/orders?limit=500", headers=as_(keys["admin"])).json()["orders"]
    assert {mine, theirs} <= {row["orderId"] for row in everyone}
    sync_redis.Redis.from_url(redis_url).delete(redis_keys.order(theirs))  # only PostgreSQL knows it now
    assert client.get(f"/api/orders/{theirs}", headers=as_(keys["alice"])).status_code == 404
    assert client.get(f"/api/orders/{theirs}", headers=as_(keys["bob"])).json()["orderId"] == theirs


def test_websockets_need_a_key_and_show_only_the_callers_orders(client, keys):
    order_id = place(client, keys["alice"])
    for suffix, code in (("", 4401), (f"?apiKey={keys['bob']}", 4404)):
        with client.websocket_connect(f"/ws/orders/{order_id}{suffix}") as socket:
            assert socket.receive_json(mode="binary")["type"] == "error"
            with pytest.raises(WebSocketDisconnect) as closed:
                socket.receive_json(mode="binary")
            assert closed.value.code == code
    with client.websocket_connect(f"/ws/orders/{order_id}", headers=as_(keys["alice"])) as socket:
        assert [socket.receive_json(mode="binary")["status"] for _ in range(2)] == ["pending", "waiting"]


def test_the_user_stream_carries_only_the_callers_orders(client, keys):
    body = {**RESTING_LIMIT, "userId": "shared-name"}
    with client.websocket_connect("/ws?userId=shared-name", headers=as_(keys["alice"])) as socket:
        place(client, keys["bob"], body)
        mine = place(client, keys["alice"], body)
        first = socket.receive_json(mode="binary")
        assert first["orderId"] == mine and first["status"] == "pending"


@pytest.mark.parametrize(
    "entry",
    ["alice:user", "alice:root:" + "0" * 64, "alice:user:" + "z" * 64, ":user:" + "0" * 64, "a:user:oek_plaintext"],
)
def test_configured_keys_must_be_name_role_and_a_sha256(entry):
    with pytest.raises(ValueError):
        parse_configured(entry)


async def test_key_ring_stores_only_hashes_and_revokes(redis):
    ring = KeyRing(redis)
    secret, key = await ring.create("carol", Role.USER)
    stored = await redis.hgetall(redis_keys.API_KEYS)
    assert secret.encode() not in b"".join(k + v for k, v in stored.items())
    assert (await ring.find(secret)).key_id == key.key_id
    assert await ring.find(secret + "x") is None
    assert [revoked.name for revoked in await ring.revoke(key.key_id)] == ["carol"]
    assert await ring.find(secret) is None
