"""Who may do what from where, against the real app on real Redis: browser pages of other sites and names
that are not the API's (DNS rebinding) are refused, a key never has to be in a URL, Idempotency-Keys of
different callers never meet, and nothing reachable over HTTP makes API keys."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from services.api import auth
from services.api.app import create_app
from services.api.routes.direct import direct_endpoint
from shared import redis_keys
from shared.auth.api_keys import KeyRing, Role, key_id

ROOT = Path(__file__).resolve().parents[2]
#: What a browser's address bar shows for `make run`: the API's own origin.
API = "http://127.0.0.1:8000"
EVIL = "https://evil.example"
RESTING_LIMIT = {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": "999999"}


@contextlib.asynccontextmanager
async def api(settings, base_url: str = API):
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=10) as client:
            yield client


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert body["success"] is False, body
    return body["error"]


async def place(http: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await http.post("/api/orders/execute", json=RESTING_LIMIT, headers=headers)


# --- cross-site requests and DNS rebinding (AUTH_ENABLED off: the local default) --------------------------


async def test_pages_of_other_sites_may_not_place_or_cancel_orders_but_clients_without_a_browser_may(settings, redis):
    async with api(settings) as http:
        for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
            refused = await place(http, **headers)
            assert refused.status_code == 403 and error_of(refused) == "cross_site_request", headers
        assert not [key async for key in redis.scan_iter(match="order:*")]  # nothing was created

        placed = await place(http)  # curl, the CLI, locust: no Origin, no Sec-Fetch-Site
        assert placed.status_code == 200, placed.text
        order_id = placed.json()["orderId"]
        refused = await http.delete(f"/api/orders/{order_id}", headers={"Origin": EVIL})
        assert refused.status_code == 403 and error_of(refused) == "cross_site_request"
        assert (await http.get(f"/api/orders/{order_id}")).json()["status"] == "waiting"

        # The dashboard: its own origin, as the browser sends it.
        same_origin = {"Origin": API, "Sec-Fetch-Site": "same-origin"}
        assert (await place(http, **same_origin)).status_code == 200
        cancelled = await http.delete(f"/api/orders/{order_id}", headers=same_origin)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"

        # Admin routes are refused to other sites before anything else is said about them.
        refused = await http.post("/api/admin/dlq/replay", headers={"Origin": EVIL})
        assert refused.status_code == 403 and error_of(refused) == "cross_site_request"


async def test_reads_from_other_sites_are_left_to_the_browser_which_shows_them_nothing(settings):
    async with api(settings) as http:
        assert (await http.get("/api/orders", headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})).is_success
        response = await http.get("/api/orders", headers={"Origin": EVIL})
        assert "access-control-allow-origin" not in response.headers  # no CORS: the page cannot read it


async def test_the_dashboard_works_as_localhost_and_127_0_0_1_and_not_under_a_rebound_name(settings):
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
        async with api(settings, base) as http:
            page = await http.get("/", headers={"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"})
            assert page.status_code == 200 and "text/html" in page.headers["content-type"], base
            own = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
            assert (await place(http, **own)).status_code == 200, base
    # A DNS-rebinding page: for the browser it is the same origin as the API, under the attacker's name.
    async with api(settings, "http://rebound.evil.example:8000") as http:
        rebound = {"Origin": "http://rebound.evil.example:8000", "Sec-Fetch-Site": "same-origin"}
        for response in (
            await http.get("/", headers={"Sec-Fetch-Site": "none"}),
            await http.get("/api/orders", headers={"Sec-Fetch-Site": "same-origin"}),
            await http.get("/metrics", headers={"Sec-Fetch-Site": "same-origin"}),
            await place(http, **rebound),
        ):
            assert response.status_code == 403 and error_of(response) == "host_not_allowed"
        assert (await http.get("/api/orders")).status_code == 200  # no browser, no rebinding: any Host


async def test_the_allow_lists_admit_the_operators_own_names_and_origins(settings):
    opened = settings.model_copy(
        update={"allowed_hosts": "api.desk.example", "allowed_origins": "https://desk.example"}
    )
    async with api(opened, "http://api.desk.example") as http:
        assert (await place(http, Origin="https://desk.example")).status_code == 200
        assert (await place(http, Origin="http://api.desk.example")).status_code == 200  # its own origin
        assert error_of(await place(http, Origin=EVIL)) == "cross_site_request"
    async with api(opened, "http://localhost:8000") as http:  # replaced: only what the operator wrote, and
        assert error_of(await place(http, Origin="http://localhost:8000")) == "host_not_allowed"
    async with api(opened) as http:  # ...API_HOST (127.0.0.1 here), the address the API listens on
        assert (await place(http, Origin=API)).status_code == 200
    bound = settings.model_copy(update={"api_host": "10.1.2.3"})
    async with api(bound, "http://10.1.2.3:8000") as http:  # API_HOST is one of its own names
        assert (await place(http, Origin="http://10.1.2.3:8000")).status_code == 200


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings), base_url=API) as test_client:
        yield test_client


def browser(origin: str = API, host: str = "127.0.0.1:8000") -> dict[str, str]:
    """A browser's handshake headers (the test client's sockets go to ws://testserver unless told)."""
    return {"Host": host, "Origin": origin}


def refused_with(socket) -> tuple[str, int]:
    error = socket.receive_json(mode="binary")
    assert error["type"] == "error", error
    with pytest.raises(WebSocketDisconnect) as closed:
        socket.receive_json(mode="binary")
    return error["error"], closed.value.code


def test_websockets_of_other_sites_and_rebound_names_are_refused(client):
    order_id = client.post("/api/orders/execute", json=RESTING_LIMIT).json()["orderId"]
    for path in (f"/ws/orders/{order_id}", f"/api/orders/execute?orderId={order_id}", "/ws?userId=u1"):
        with client.websocket_connect(path, headers=browser(EVIL)) as socket:
            assert refused_with(socket) == ("cross_site_request", 4403), path
        rebound = browser("http://rebound.evil.example:8000", "rebound.evil.example:8000")
        with client.websocket_connect(path, headers=rebound) as socket:
            assert refused_with(socket) == ("host_not_allowed", 4403), path
    for headers in (browser(), browser("http://localhost:8000", "localhost:8000"), {}):  # dashboard; no browser
        with client.websocket_connect(f"/ws/orders/{order_id}", headers=headers) as socket:
            assert [socket.receive_json(mode="binary")["status"] for _ in range(2)] == ["pending", "waiting"]


# --- a key is never needed in a URL --------------------------------------------------------------------


@pytest.fixture
async def secrets(redis):
    ring = KeyRing(redis)
    alice, _ = await ring.create("alice", Role.USER)
    bob, _ = await ring.create("bob", Role.USER)
    return {"alice": alice, "bob": bob}


@pytest.fixture
def keyed(settings, secrets):
    with TestClient(create_app(settings.model_copy(update={"auth_enabled": True})), base_url=API) as test_client:
        yield test_client


def test_http_takes_the_key_in_a_header(keyed, secrets):
    for headers in ({"Authorization": f"Bearer {secrets['alice']}"}, {"X-API-Key": secrets["alice"]}):
        assert keyed.post("/api/orders/execute", json=RESTING_LIMIT, headers=headers).status_code == 200
    assert keyed.post(f"/api/orders/execute?apiKey={secrets['alice']}", json=RESTING_LIMIT).status_code == 401


def test_a_websocket_authenticates_with_its_first_message_or_a_header_and_apikey_stays_a_fallback(keyed, secrets):
    bearer = {"Authorization": f"Bearer {secrets['alice']}"}
    order_id = keyed.post("/api/orders/execute", json=RESTING_LIMIT, headers=bearer).json()["orderId"]
    first_message = {"type": "auth", "apiKey": secrets["alice"]}
    for path, headers, hello in (
        (f"/ws/orders/{order_id}", browser(), first_message),  # the dashboard's way
        (f"/api/orders/execute?orderId={order_id}", {}, first_message),
        (f"/ws/orders/{order_id}", bearer, None),
        (f"/ws/orders/{order_id}", {"X-API-Key": secrets["alice"]}, None),
        (f"/ws/orders/{order_id}?apiKey={secrets['alice']}", {}, None),  # the documented fallback
    ):
        with keyed.websocket_connect(path, headers=headers) as socket:
            if hello is not None:
                socket.send_json(hello)
            assert [socket.receive_json(mode="binary")["status"] for _ in range(2)] == ["pending", "waiting"], path
    with keyed.websocket_connect(f"/ws/orders/{order_id}") as socket:  # bob's key: not his order
        socket.send_json({"type": "auth", "apiKey": secrets["bob"]})
        assert refused_with(socket) == ("order_not_found", 4404)


def test_the_user_stream_takes_the_first_message_too(keyed, secrets):
    bearer = {"Authorization": f"Bearer {secrets['alice']}"}
    with keyed.websocket_connect("/ws?userId=desk") as socket:
        socket.send_json({"type": "auth", "apiKey": secrets["alice"]})
        socket.send_text("anything after the auth message is ignored")
        order_id = keyed.post("/api/orders/execute", json={**RESTING_LIMIT, "userId": "desk"}, headers=bearer).json()[
            "orderId"
        ]
        event = socket.receive_json(mode="binary")
        assert event["orderId"] == order_id and event["status"] == "pending"


@pytest.mark.parametrize(
    "first",
    [
        '{"type":"auth","apiKey":"oek_not-a-key-anyone-has"}',
        '{"type":"subscribe","apiKey":"KEY"}',
        '{"type":"auth"}',
        '{"type":"auth","apiKey":["KEY"]}',
        "KEY",
        "not json",
    ],
)
def test_a_first_message_that_is_not_a_known_keys_auth_closes_4401(keyed, secrets, first):
    with keyed.websocket_connect("/ws?userId=desk") as socket:
        socket.send_text(first.replace("KEY", secrets["alice"]))
        assert refused_with(socket) == ("unauthorized", 4401)


def test_a_websocket_that_sends_no_key_in_time_closes_4401(keyed, monkeypatch):
    monkeypatch.setattr(auth, "WS_AUTH_TIMEOUT_S", 0.3)
    with keyed.websocket_connect("/ws?userId=desk") as socket:
        error, code = refused_with(socket)
        assert (error, code) == ("unauthorized", 4401)


def test_with_keys_off_an_auth_message_is_harmless(client):
    order_id = client.post("/api/orders/execute", json=RESTING_LIMIT).json()["orderId"]
    with client.websocket_connect(f"/ws/orders/{order_id}") as socket:
        socket.send_json({"type": "auth", "apiKey": "oek_whatever"})
        assert [socket.receive_json(mode="binary")["status"] for _ in range(2)] == ["pending", "waiting"]


# --- Idempotency-Keys: one namespace per caller --------------------------------------------------------


async def test_an_anonymous_key_never_meets_a_keyed_callers_key(settings, redis, secrets):
    alice_id = key_id((await KeyRing(redis).find(secrets["alice"])).key_hash)
    keyed_settings = settings.model_copy(update={"auth_enabled": True})
    async with api(keyed_settings) as http:
        alices = await place(http, **{"Authorization": f"Bearer {secrets['alice']}", "Idempotency-Key": "xyz"})
    async with api(settings) as http:  # the same Redis, keys now off: every caller is anonymous
        for key in (f"{alice_id}/xyz", f"{alice_id}:xyz", f"k:{alice_id}:xyz", "xyz"):
            other = await place(http, **{"Idempotency-Key": key})
            assert other.status_code == 200 and "idempotent-replayed" not in other.headers, key
            assert other.json()["orderId"] != alices.json()["orderId"], key
        again = await place(http, **{"Idempotency-Key": f"{alice_id}/xyz"})
        assert again.headers["idempotent-replayed"] == "true"  # each still replays within its namespace
        refused = await place(http, **{"Idempotency-Key": "replay:00000000-0000-0000-0000-000000000000"})
        assert refused.status_code == 400 and error_of(refused) == "invalid_idempotency_key"
    remembered = {key.decode() async for key in redis.scan_iter(match="idem:*")}
    namespaced = {f"c:{alice_id}/xyz", f"c:{alice_id}:xyz", f"c:k:{alice_id}:xyz", "c:xyz", f"k:{alice_id}:xyz"}
    assert remembered == {redis_keys.idempotency(scope, 0) for scope in namespaced}  # one partition


# --- nothing that reaches the API can make a key -------------------------------------------------------


def test_no_route_can_mint_api_keys(settings):
    document = create_app(settings).openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            text = " ".join(str(operation.get(field, "")) for field in ("summary", "description", "operationId"))
            assert not re.search(r"\bkeys?\b", path, re.IGNORECASE), (method, path)
            assert not re.search(r"api[ _-]?key", text, re.IGNORECASE), (method, path, text)
    # The routes served outside FastAPI are the order submission and the three streams, nothing else.
    for path in ("/api/keys", "/api/admin/keys", "/keys"):
        for method in ("POST", "PUT", "PATCH"):
            assert direct_endpoint({"type": "http", "path": path, "method": method}) is None
    # No module the API runs writes a key: only the CLI (a shell that reaches Redis) makes them.
    writers = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "services" / "api").rglob("*.py")
        if re.search(r"\.create\(\s*\w+,\s*Role|hset\(\s*redis_keys\.API_KEYS|\bRole\.(ADMIN|USER)\b", path.read_text())
    ]
    assert writers == [], writers
