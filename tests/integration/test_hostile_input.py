"""Issue 13, "Bad input", against the real app on real Redis and PostgreSQL: every spelling that only becomes
a valid value after Python's generosity (other scripts' digits, underscores, Unicode case folding, offsets
that leave the calendar) is a 4xx with the contract's body, nothing is created, and no answer echoes more
than a short piece of what was sent. Resting orders live at most RESTING_MAX_LIFETIME_S."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from services.api.app import create_app
from shared.auth.api_keys import hash_key, new_secret
from shared.domain.events import utc_now
from shared.domain.orders import DEFAULT_RESTING_MAX_LIFETIME_S
from tests.support.hostile import assert_refused, assert_websocket_refused

MARKET = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}
LIMIT = {**MARKET, "type": "limit", "limitPrice": "1000000"}
SNIPER = {**MARKET, "type": "sniper", "tokenOut": "WIF", "trigger": {"kind": "listing"}}


@pytest.fixture
def client(redis, settings):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def order_keys(redis_url: str) -> list[bytes]:
    return Redis.from_url(redis_url).keys("order:*")


def in_(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({**MARKET, "amount": "1_0"}, "invalid_decimal"),
        ({**MARKET, "amount": "\u0661"}, "invalid_decimal"),  # Arabic-Indic one
        ({**MARKET, "amount": "\uff11"}, "invalid_decimal"),  # full-width one
        ({**MARKET, "amount": "\u0967\u0966"}, "invalid_decimal"),  # Devanagari ten
        ({**MARKET, "amount": "1e99999999999999999999999999999999999"}, "invalid_decimal"),
        ({**LIMIT, "limitPrice": "1.00000000000000000000000000001"}, "invalid_limit_price"),
        ({**MARKET, "slippage": "0.01000000000000000000000000000001"}, "invalid_slippage"),
        ({**MARKET, "tokenIn": "\u017fol"}, "unknown_token"),  # long s: "ſol".upper() == "SOL"
        ({**MARKET, "tokenOut": "\uff35\uff33\uff24\uff23"}, "unknown_token"),  # full-width USDC
        ({**MARKET, "tokenIn": "\u3000SOL"}, "unknown_token"),
        ({**LIMIT, "expiresAt": "9999-12-31T23:59:59-23:59"}, "invalid_expires_at"),  # was a 500 (OverflowError)
        ({**LIMIT, "expiresAt": "0001-01-01T00:00:00+23:59"}, "invalid_expires_at"),
        ({**LIMIT, "expiresAt": "2999-01-01T00:00:00Z"}, "invalid_expires_at"),
        ({**SNIPER, "expiresAt": "2999-01-01T00:00:00Z"}, "invalid_expires_at"),
        ({**LIMIT, "expiresAt": 253402300799000}, "invalid_expires_at"),  # Unix milliseconds: 9999-12-31
    ],
)
def test_a_hostile_order_body_is_refused_and_nothing_is_created(client, redis_url, body, error):
    refused = assert_refused(client.post("/api/orders/execute", json=body), 400, error)
    assert len(refused["message"]) < 200
    assert order_keys(redis_url) == []


def test_plain_ascii_spellings_still_work(client):
    for body in (
        {**MARKET, "amount": "+1.5"},
        {**MARKET, "amount": " 1.5e0 "},
        {**MARKET, "amount": 2},
        {**MARKET, "tokenIn": "sol", "tokenOut": "Usdc"},
        {**MARKET, "tokenOut": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"},
        {**LIMIT, "expiresAt": in_(DEFAULT_RESTING_MAX_LIFETIME_S - 60)},
    ):
        response = client.post("/api/orders/execute", json=body)
        assert response.status_code == 200, (body, response.text)


def test_the_expiry_cap_names_itself_and_follows_the_setting(redis, settings):
    with TestClient(create_app(settings.model_copy(update={"resting_max_lifetime_s": 3600}))) as client:
        refused = assert_refused(client.post("/api/orders/execute", json={**LIMIT, "expiresAt": in_(7200)}), 400)
        assert refused["error"] == "invalid_expires_at" and "1 hours" in refused["message"]
        assert client.post("/api/orders/execute", json={**LIMIT, "expiresAt": in_(1800)}).status_code == 200


@pytest.mark.parametrize("body", [LIMIT, SNIPER])
def test_a_resting_order_without_expires_at_expires_after_the_maximum_lifetime(client, body):
    before = utc_now()
    order_id = client.post("/api/orders/execute", json=body).json()["orderId"]
    expires_at = datetime.fromisoformat(client.get(f"/api/orders/{order_id}").json()["expiresAt"])
    lifetime = timedelta(seconds=DEFAULT_RESTING_MAX_LIFETIME_S)
    assert before + lifetime <= expires_at <= utc_now() + lifetime


def test_a_market_order_gets_no_expiry(client):
    order_id = client.post("/api/orders/execute", json=MARKET).json()["orderId"]
    assert client.get(f"/api/orders/{order_id}").json().get("expiresAt") is None


@pytest.mark.parametrize("depth", [17, 200, 900])
def test_json_nested_deeper_than_an_order_needs_is_refused_before_it_is_hashed(client, redis_url, depth):
    nested = "[" * depth + "]" * depth
    content = '{"tokenIn":"SOL","tokenOut":"USDC","amount":"1","clientOrderId":' + nested + "}"
    headers = {"content-type": "application/json", "Idempotency-Key": f"deep-{depth}"}
    assert_refused(client.post("/api/orders/execute", content=content, headers=headers), 400, "invalid_json")
    assert order_keys(redis_url) == []


@pytest.mark.parametrize(
    "content",
    [
        b'{"tokenIn":"SOL","tokenOut":"USDC","amount":"1","amount":"1000"}',  # which amount? parsers differ
        b'{"tokenIn":"SOL","tokenOut":"USDC","amount":"1","trigger":{"kind":"listing","kind":"liquidity"}}',
        '{"tokenIn":"SOL","tokenOut":"USDC","amount":"1"}'.encode("utf-16"),  # json.loads(bytes) guesses UTF-16
        '{"tokenIn":"SOL","tokenOut":"USDC","amount":"1"}'.encode("utf-32-le"),
        b'\xef\xbb\xbf{"tokenIn":"SOL","tokenOut":"USDC","amount":"1"}',  # a UTF-8 byte order mark
    ],
)
def test_a_body_with_two_meanings_or_not_in_utf8_is_refused(client, redis_url, content):
    headers = {"content-type": "application/json"}
    assert_refused(client.post("/api/orders/execute", content=content, headers=headers), 400, "invalid_json")
    assert order_keys(redis_url) == []


def test_no_answer_echoes_a_long_input(client):
    long = "x" * 5000
    for path in (f"/api/orders?cursor={long}", f"/api/quotes/{long}-USDC", f"/api/orders?userId={long}"):
        assert_refused(client.get(path))
    extra = {**MARKET, long: 1, "amount": long, "tokenIn": long}
    body = assert_refused(client.post("/api/orders/execute", json=extra), 400)
    assert long not in str(body)
    many_fields = {**MARKET, **{f"f{i}": i for i in range(500)}}
    assert len(assert_refused(client.post("/api/orders/execute", json=many_fields), 400)["details"]) == 20


@pytest.mark.parametrize("limit", ["1_0", "\u0661\u0660", "\uff11\uff10", "+5", " 5", "5 ", "0x10", "9" * 40, "1e1"])
def test_history_limit_is_ascii_digits_only(client, limit):
    assert_refused(client.get("/api/orders", params={"limit": limit}), 400)


def test_history_filters_and_cursors_take_no_unicode_spelling(client):
    client.post("/api/orders/execute", json=MARKET)
    for params in ({"tokenIn": "\u017fol"}, {"tokenOut": "\uff35SDC"}, {"cursor": "\u0661" * 20}):
        assert_refused(client.get("/api/orders", params=params), 400)
    assert client.get("/api/orders", params={"tokenIn": "sol"}).status_code == 200


def test_quotes_take_no_unicode_spelling_of_a_token(client):
    assert_refused(client.get("/api/quotes/\u017fol-USDC"), 400, "unknown_token")


def test_admin_numbers_are_ascii_digits_only(redis, settings):
    secret = new_secret()
    configured = settings.model_copy(update={"auth_enabled": True, "api_keys": f"ops:admin:{hash_key(secret)}"})
    with TestClient(create_app(configured)) as client:
        headers = {"X-API-Key": secret}
        for limit in ("1_0", "\u0661", "+1"):
            assert_refused(client.get("/api/admin/dlq", params={"limit": limit}, headers=headers), 400)
        for age in ("1_0", "\u0661", "nan", "inf", "1e3"):
            response = client.delete("/api/admin/dlq", params={"olderThanS": age}, headers=headers)
            assert_refused(response, 400)
        assert client.get("/api/admin/dlq", params={"limit": "10"}, headers=headers).status_code == 200


def spelled(order_id: uuid.UUID, zero: int) -> str:
    """The order id with its first decimal digit written in the script whose zero is `zero`: the same number to
    `UUID()` (it reads hex with int()), another spelling."""
    text = str(order_id)
    at = next(i for i, char in enumerate(text) if char.isdigit())
    return text[:at] + chr(zero + int(text[at])) + text[at + 1 :]


@pytest.mark.parametrize("after", ["\u0661", "\u00b2", "\uff11", "1_0", "+1", " 1", "9" * 10, "9" * 5000, ""])
def test_an_order_stream_refuses_a_unicode_or_absurd_after(client, after):
    order_id = client.post("/api/orders/execute", json=LIMIT).json()["orderId"]
    for path in (f"/ws/orders/{order_id}?after={after}", f"/api/orders/execute?orderId={order_id}&after={after}"):
        assert_websocket_refused(client, path, 4400, "invalid_after")


def test_an_order_stream_refuses_a_unicode_spelling_of_an_order_id(client):
    order_id = uuid.UUID(client.post("/api/orders/execute", json=LIMIT).json()["orderId"])
    for zero in (0x0660, 0xFF10):  # Arabic-Indic, full-width
        assert uuid.UUID(spelled(order_id, zero)) == order_id
        for path in (
            f"/ws/orders/{spelled(order_id, zero)}",
            f"/api/orders/execute?orderId={spelled(order_id, zero)}",
        ):
            assert_websocket_refused(client, path, 4400, "invalid_order_id")
    underscored = order_id.hex[:4] + "_" + order_id.hex[5:]
    assert_websocket_refused(client, f"/ws/orders/{underscored}", 4400, "invalid_order_id")


@pytest.mark.parametrize("user_id", ["", "x" * 65, "x" * 5000, "a\u0001b", "a\u007fb"])
def test_the_user_stream_refuses_an_absurd_user_id(client, user_id):
    assert_websocket_refused(client, f"/ws?userId={quote(user_id)}", 4400, "invalid_user_id")


@pytest.mark.parametrize(
    "number",
    ["1e9999999999999999999999999999999", "-1e-9999999999999999999999999999999", "1" + "0" * 5000, "1e31", "1e-31"],
)
def test_a_json_number_out_of_any_range_is_a_400(client, redis_url, number):
    content = '{"tokenIn":"SOL","tokenOut":"USDC","amount":' + number + "}"
    assert_refused(client.post("/api/orders/execute", content=content, headers={"content-type": "application/json"}))
    assert order_keys(redis_url) == []
