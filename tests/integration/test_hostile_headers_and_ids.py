"""Issue 13, the cases a second attacker found after the first pass: headers a browser check reads (`Host`,
`Origin`) with ports that are not numbers, refusals that quoted a whole header back, ids that are stored and
echoed (history, events, the CLI) carrying terminal escapes or text that displays as something else, and API
keys with Unicode spaces around them. Each is a 4xx (WebSocket: 4xxx after an error message), nothing is
created, and no traceback is logged."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from urllib.parse import quote

import httpx
import orjson
import pytest
import uvicorn
from fastapi.testclient import TestClient
from loguru import logger
from redis import Redis

from services.api.app import create_app
from services.api.connections import guarded_protocol
from services.api.guards.browser_origin import BrowserPolicy
from shared import redis_keys
from shared.auth.api_keys import KeyRing, Role
from tests.support.hostile import assert_refused, assert_websocket_refused

API = "http://127.0.0.1:8000"
MARKET = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}
LIMIT = {**MARKET, "type": "limit", "limitPrice": "1000000"}


@pytest.fixture
def logged():
    """Every log line the app writes meanwhile (a traceback would be one of them)."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message}\n{exception}")
    yield lines
    logger.remove(sink)


@pytest.fixture
def client(redis, settings):
    with TestClient(create_app(settings), base_url=API) as test_client:
        yield test_client


def order_keys(redis_url: str) -> list[bytes]:
    return Redis.from_url(redis_url).keys("order:*")


# Ports a browser never sends, but anyone may: "²" passes str.isdigit() and int() refuses it (was a 500 on every
# route, probes included, and a 500 handshake for WebSockets); 5000 digits exceed int()'s 4300-digit limit.
ODD_PORTS = ["\u00b2", "\u00b9", "\u0668000", "\uff18000", "9" * 5000, "8000" + "0" * 10, "-8000", "+8000", "80_00"]


@contextlib.asynccontextmanager
async def raw_api(settings):
    """The app over httpx's ASGI transport, which passes header bytes as given (the test client re-encodes
    them as UTF-8, so "\\xb2" would arrive as "\\xc2\\xb2")."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API, timeout=10) as http:
            yield http


def odd_host(port: str, name: bytes = b"127.0.0.1") -> bytes:
    """Headers travel as bytes, read as latin-1: "²" is the byte 0xB2, "٨" arrives as its UTF-8 bytes."""
    return name + b":" + (port.encode("latin-1") if max(map(ord, port)) < 256 else port.encode())


@pytest.mark.parametrize("port", ODD_PORTS)
async def test_an_origin_or_host_whose_port_is_not_a_number_is_refused_not_a_500(
    redis, settings, redis_url, logged, port
):
    cases = (
        {"Origin": b"http://" + odd_host(port), "Host": b"127.0.0.1:8000"},  # Host is the API's own
        {"Origin": b"http://" + odd_host(port), "Host": odd_host(port)},  # the same odd port on both sides
        {"Origin": b"http://" + odd_host(port, b"[::1]"), "Host": odd_host(port, b"[::1]")},
    )
    async with raw_api(settings) as http:
        for headers in cases:
            response = await http.post("/api/orders/execute", json=LIMIT, headers=headers)
            refused = assert_refused(response, 403, "cross_site_request")
            assert len(refused["message"]) < 250
    assert order_keys(redis_url) == []
    assert not [line for line in logged if "Traceback" in line]
    policy = BrowserPolicy.from_settings(settings)  # a WebSocket handshake is checked by the same call
    for headers in cases:
        refusal = policy.refusal(None, {name.lower().encode(): value for name, value in headers.items()})
        assert refusal is not None and refusal.code == "cross_site_request"


def test_the_apis_own_origin_with_an_explicit_or_default_port_still_places_orders(client):
    for origin, host in (
        (API, "127.0.0.1:8000"),
        ("http://localhost", "localhost"),
        ("http://localhost:80", "localhost"),
    ):
        response = client.post("/api/orders/execute", json=LIMIT, headers={"Origin": origin, "Host": host})
        assert response.status_code == 200, (origin, host, response.text)


def test_a_refusal_quotes_at_most_64_characters_of_host_origin_or_method(client):
    long_name = "a" * 3000
    cases = [
        ("GET", {"Host": long_name, "Sec-Fetch-Site": "none"}, "host_not_allowed"),
        ("POST", {"Origin": "http://" + long_name}, "cross_site_request"),
        ("X" * 3000, {"Origin": "https://evil.example"}, "cross_site_request"),  # any token is a method
    ]
    for method, headers, error in cases:
        refused = assert_refused(client.request(method, "/api/orders", headers=headers), 403, error)
        assert "a" * 65 not in refused["message"] and "X" * 65 not in refused["message"], refused["message"][:200]


# --- ids that are stored and echoed -----------------------------------------------------------------------

HIDDEN_IN_IDS = [
    "a\u009b[31mb",  # C1 CSI: a terminal reads it as ESC [
    "a\u0085b",  # NEL, a C1 control and a line break to some log viewers
    "a\u202eb",  # right-to-left override: "desk\u202e1-kcod" displays as another id
    "a\u2066b\u2069",  # a bidi isolate
    "a\u2028b",  # line separator
    "a\u200bb",  # zero-width space: two ids that look alike
    "a\ufeffb",  # byte order mark
    "a\U000e0041b",  # an invisible tag character
]


@pytest.mark.parametrize("hidden", HIDDEN_IN_IDS)
@pytest.mark.parametrize("field", ["userId", "clientOrderId"])
def test_an_id_with_a_control_invisible_or_direction_character_is_refused(client, redis_url, field, hidden):
    assert_refused(client.post("/api/orders/execute", json={**MARKET, field: hidden}), 400, "string_pattern_mismatch")
    assert order_keys(redis_url) == []


@pytest.mark.parametrize("hidden", HIDDEN_IN_IDS)
def test_the_user_stream_refuses_the_same_ids_4400(client, hidden):
    assert_websocket_refused(client, f"/ws?userId={quote(hidden)}", 4400, "invalid_user_id")


def test_ids_in_any_script_are_still_welcome(client):
    body = {**MARKET, "userId": "désk-東京", "clientOrderId": "ордер 🚀"}
    order_id = client.post("/api/orders/execute", json=body).json()["orderId"]
    assert client.get(f"/api/orders/{order_id}").json()["clientOrderId"] == "ордер 🚀"


# --- API keys: one spelling ---------------------------------------------------------------------------------


@pytest.fixture
async def secret(redis):
    key, _ = await KeyRing(redis).create("alice", Role.ADMIN)
    return key


@pytest.fixture
def keyed(settings, secret):
    with TestClient(create_app(settings.model_copy(update={"auth_enabled": True})), base_url=API) as test_client:
        yield test_client


#: str.strip() strips both (and h11 strips neither: only spaces and tabs are a header's padding).
UNICODE_SPACES = ["\u00a0", "\u0085"]


@pytest.mark.parametrize("space", UNICODE_SPACES)
async def test_a_key_in_a_header_with_unicode_space_around_it_is_not_the_key(redis, settings, secret, redis_url, space):
    async with raw_api(settings.model_copy(update={"auth_enabled": True})) as http:
        for headers in (
            {"X-API-Key": (space + secret).encode("latin-1")},
            {"Authorization": ("Bearer " + secret + space).encode("latin-1")},
        ):
            assert_refused(await http.post("/api/orders/execute", json=LIMIT, headers=headers), 401, "unauthorized")
            assert_refused(await http.get("/api/admin/dlq", headers=headers), 401, "unauthorized")
        assert order_keys(redis_url) == []
        # ASCII spaces around a key are layout, as before.
        assert (await http.get("/api/admin/dlq", headers={"Authorization": f"Bearer  {secret}\t"})).status_code == 200


@pytest.mark.parametrize("space", UNICODE_SPACES)
def test_a_key_in_the_first_message_with_unicode_space_around_it_is_not_the_key(keyed, secret, space):
    with keyed.websocket_connect("/ws?userId=desk") as socket:
        socket.send_json({"type": "auth", "apiKey": space + secret})
        # Were the key taken, this socket would hear the order below instead of an error (and not hang).
        keyed.post("/api/orders/execute", json={**LIMIT, "userId": "desk"}, headers={"X-API-Key": secret})
        error = socket.receive_json(mode="binary")
        assert error.get("error") == "unauthorized", error
    with keyed.websocket_connect("/ws?userId=desk") as socket:  # ASCII spaces: layout
        socket.send_json({"type": "auth", "apiKey": f" {secret}\n"})
        order_id = keyed.post("/api/orders/execute", json={**LIMIT, "userId": "desk"}, headers={"X-API-Key": secret})
        assert socket.receive_json(mode="binary")["orderId"] == order_id.json()["orderId"]


# --- Content-Length -----------------------------------------------------------------------------------------


async def test_a_content_length_padded_with_zeros_is_read_as_its_value_not_a_500(redis, settings, redis_url, logged):
    body = orjson.dumps(LIMIT)
    json_type = {"Content-Type": "application/json"}
    async with raw_api(settings) as http:
        # The server takes any number of leading zeros; int() took at most 4300 digits (a 500 before).
        padded = {**json_type, "Content-Length": "0" * 4400 + str(len(body))}
        assert (await http.post("/api/orders/execute", content=body, headers=padded)).status_code == 200
        too_large = {**json_type, "Content-Length": "0" * 4400 + "9" * 30}
        assert_refused(await http.post("/api/orders/execute", content=body, headers=too_large), 413, "body_too_large")
    assert len([key for key in order_keys(redis_url) if redis_keys.order_id_of(key.decode())]) == 1  # one, no other
    assert not [line for line in logged if "Traceback" in line]


# --- WebSocket handshakes the websockets parser refuses ----------------------------------------------------


@contextlib.asynccontextmanager
async def served(settings):
    """The API on a real uvicorn server (port picked by the system), with its guarded HTTP protocol."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, http=guarded_protocol(settings), log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


def _answer_within(port: int, request: bytes, seconds: float) -> tuple[bytes, bool]:
    """What the server sends within `seconds`, and whether it closed the connection meanwhile."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        sock.settimeout(seconds)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return received, False
        return received, True


UPGRADE = (
    b"GET /ws?userId=desk HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


@pytest.mark.parametrize(
    "extra",
    [b"X-Pad: " + b"a" * 9000 + b"\r\n", b"".join(b"X-H%d: 1\r\n" % i for i in range(200))],
    ids=["a 9 KB header line", "200 headers"],
)
async def test_a_websocket_handshake_its_parser_refuses_is_answered_not_held_open(redis, settings, extra):
    # Before: uvicorn's sans-I/O WebSocket protocol prepared a 400 and never sent it; the socket stayed open,
    # counted by no cap, for as long as the client liked (one descriptor each).
    async with served(settings) as port:
        answer, closed = await asyncio.to_thread(_answer_within, port, UPGRADE + extra + b"\r\n", 5.0)
        assert closed and answer.startswith(b"HTTP/1.1 431 "), answer
        # A handshake within the parser's limits is still a WebSocket (a malformed userId: the quickest answer
        # to observe, its error message then a 4400 close).
        bad_user = UPGRADE.replace(b"userId=desk", b"userId=%00") + b"X-Pad: " + b"a" * 4000 + b"\r\n\r\n"
        answer, _ = await asyncio.to_thread(_answer_within, port, bad_user, 2.0)
        assert answer.startswith(b"HTTP/1.1 101 ") and b"invalid_user_id" in answer, answer
