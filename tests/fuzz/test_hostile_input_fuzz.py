"""Hypothesis generates hostile input for every route (issue 13, "Bad input"), beside schemathesis's run
(test_openapi_fuzz.py), which generates from the schema and so never tries what the schema cannot say: other
scripts' digits, Unicode spellings of token symbols, offsets that leave the calendar, JSON nested as deep as
the parser goes, absurd lengths, on HTTP routes and WebSocket paths alike.

Every hostile order body is a 4xx with the contract's body and creates nothing; every hostile query is a 4xx
(HTTP) or an error message then a 4xxx close (WebSocket); no answer is a 5xx or quotes a long input back.
The app is the real one, in-process, on the suite's real Redis and PostgreSQL; a few hundred examples in all.
"""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis import Redis

from services.api.app import create_app
from shared.auth.api_keys import hash_key, new_secret
from shared.domain import tokens
from shared.settings import Settings
from tests.support.hostile import assert_contract_answer, assert_refused, assert_websocket_refused

EXAMPLES = 40
FUZZ = hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

MARKET = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}
LIMIT = {**MARKET, "type": "limit", "limitPrice": "1000000"}
SNIPER = {**MARKET, "type": "sniper", "tokenOut": "WIF", "trigger": {"kind": "listing"}}
ADMIN_SECRET = new_secret()

# --- hostile pieces ---------------------------------------------------------------------------------------

#: The zero of scripts whose digits Python's int(), float() and Decimal() read as 0-9.
FOREIGN_ZEROS = [0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0x1040, 0xFF10, 0x1D7CE]
#: Characters that are digits to str.isdigit() but numbers to nobody, and Python's digit separator.
ODD_DIGITS = ["\u00b2", "\u00b3", "\u00b9", "\u2460", "_"]
#: Spaces str.strip() removes but the contract does not allow around a value.
UNICODE_SPACES = ["\u00a0", "\u2003", "\u3000", "\u2028", "\ufeff"]

foreign_digit = st.builds(lambda zero, n: chr(zero + n), st.sampled_from(FOREIGN_ZEROS), st.integers(0, 9))
hostile_char = st.one_of(foreign_digit, st.sampled_from(ODD_DIGITS))


@st.composite
def hostile_numbers(draw) -> str:
    """An ASCII number with at least one character that only Python's leniency reads as part of it."""
    ascii_number = draw(st.from_regex(r"\A[0-9]{1,6}(\.[0-9]{1,4})?\Z"))
    at = draw(st.integers(0, len(ascii_number)))
    inserted = draw(hostile_char)
    text = ascii_number[:at] + inserted + ascii_number[at:]
    if draw(st.booleans()):
        text = draw(st.sampled_from(UNICODE_SPACES)) + text
    return text


#: Non-ASCII letters whose upper-casing (or NFKC form) is an ASCII letter: "ſ" → S, "ı" → I, "K" (Kelvin) → k.
LOOKALIKES = {"s": ["\u017f"], "i": ["\u0131"], "k": ["\u212a"]}


def lookalikes(letter: str) -> list[str]:
    full_width = chr((0xFF21 if letter.isupper() else 0xFF41) + ord(letter.lower()) - ord("a"))
    return [full_width, *LOOKALIKES.get(letter.lower(), [])]


@st.composite
def hostile_tokens(draw) -> str:
    """A known symbol (any case) with one letter spelled so that only Unicode case folding or normalisation
    recovers it, or with Unicode spaces around it."""
    symbol = draw(st.sampled_from([*sorted(tokens.TOKENS), "WSOL"]))
    symbol = draw(st.sampled_from([symbol, symbol.lower()]))
    at = draw(st.integers(0, len(symbol) - 1))
    spelled = symbol[:at] + draw(st.sampled_from(lookalikes(symbol[at]))) + symbol[at + 1 :]
    space = draw(st.sampled_from(UNICODE_SPACES))
    return draw(st.sampled_from([spelled, f"{space}{symbol}", f"{symbol}{space}"]))


@st.composite
def far_timestamps(draw) -> str:
    """A zoned RFC 3339 time past the resting orders' maximum lifetime, or off the calendar once in UTC."""
    year = draw(st.one_of(st.integers(2100, 9999), st.integers(1, 9)))
    offset = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    sign, minutes = ("-" if offset < 0 else "+"), abs(offset)
    zone = draw(st.sampled_from(["Z", f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"]))
    edge = draw(st.sampled_from(["12-31T23:59:59", "01-01T00:00:00", "06-15T12:00:00"]))
    return f"{year:04d}-{edge}{zone}"


def nested(depth: int, leaf: object) -> object:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


hostile_field = st.one_of(
    st.builds(lambda text: ("amount", text), hostile_numbers()),
    st.builds(lambda text: ("limitPrice", text), hostile_numbers()),
    st.builds(lambda text: ("slippage", "0." + text), hostile_numbers()),
    st.builds(lambda text: ("tokenIn", text), hostile_tokens()),
    st.builds(lambda text: ("tokenOut", text), hostile_tokens()),
    st.builds(lambda text: ("expiresAt", text), far_timestamps()),
    st.builds(
        lambda name, depth: (name, nested(depth, 1)),
        st.sampled_from(["amount", "trigger", "clientOrderId", "tokenIn", "somethingElse"]),
        st.integers(17, 400),
    ),
    st.builds(lambda length: ("x" * length, 1), st.integers(65, 5000)),  # an unknown field with a long name
)

#: Text a query parameter may hold that no route takes as a number, a cursor or a token.
absurd_text = st.one_of(
    hostile_numbers(),
    hostile_tokens(),
    st.builds(lambda char, n: char * n, st.sampled_from(["x", "9", "\u0661", "%", "\u00e9"]), st.integers(65, 6000)),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40),
)

# --- the app ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_settings(redis_url, database_url):
    Redis.from_url(redis_url).flushdb()
    return Settings(
        redis_url=redis_url, database_url=database_url, sim_latency_scale=0, sim_failure_rate=0, sim_seed="hostile"
    )


@pytest.fixture(scope="module")
def client(fuzz_settings):
    with TestClient(create_app(fuzz_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def admin_client(fuzz_settings):
    configured = fuzz_settings.model_copy(
        update={"auth_enabled": True, "api_keys": f"fuzz:admin:{hash_key(ADMIN_SECRET)}"}
    )
    with TestClient(create_app(configured), headers={"X-API-Key": ADMIN_SECRET}) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def resting_order(client) -> str:
    """A limit order no price reaches (no limit worker runs): its stream stays open for a valid `after`."""
    response = client.post("/api/orders/execute", json=LIMIT)
    assert response.status_code == 200, response.text
    return response.json()["orderId"]


def is_uint(text: str, low: int, high: int) -> bool:
    return re.fullmatch(r"[0-9]{1,18}", text) is not None and low <= int(text) <= high


def order_count(redis_url: str) -> int:
    return len(Redis.from_url(redis_url).keys("order:*"))


# --- the properties -----------------------------------------------------------------------------------------


@FUZZ
@given(base=st.sampled_from([MARKET, LIMIT, SNIPER]), field=hostile_field, key=st.booleans())
def test_a_hostile_order_body_is_refused_and_creates_nothing(client, redis_url, base, field, key):
    name, value = field
    before = order_count(redis_url)
    headers = {"Idempotency-Key": f"hostile-{uuid.uuid4()}"} if key else {}
    response = client.post("/api/orders/execute", json={**base, name: value}, headers=headers)
    assert_refused(response)
    for sent in (name, str(value)):
        assert len(sent) <= 64 or sent[:65] not in response.text  # quoted at most in part
    assert order_count(redis_url) == before


HTTP_QUERIES = ["limit", "cursor", "status", "type", "userId", "tokenIn", "tokenOut"]


@FUZZ
@given(
    name=st.sampled_from(HTTP_QUERIES), value=absurd_text, path=st.sampled_from(["/api/orders", "/api/orders/history"])
)
def test_history_answers_any_query_with_a_page_or_a_4xx(client, name, value, path):
    response = client.get(path, params={name: value})
    assert_contract_answer(response)
    if (name == "limit" and not is_uint(value, 1, 500)) or (name == "cursor" and value):
        assert_refused(response, 400)


@FUZZ
@given(value=absurd_text, method=st.sampled_from(["GET", "DELETE"]), quotes=st.booleans())
def test_path_parameters_answer_a_4xx(client, value, method, quotes):
    assume(value.strip(".") != "")  # "." and ".." are path steps the client resolves, not parameters
    if quotes:
        response = client.get(f"/api/quotes/{quote(value, safe='')}-USDC")
    else:
        response = client.request(method, f"/api/orders/{quote(value, safe='')}")
    assert_refused(response)


@FUZZ
@given(name=st.sampled_from(["limit", "olderThanS"]), value=absurd_text)
def test_admin_numbers_answer_a_4xx(admin_client, name, value):
    if name == "limit":
        response = admin_client.get("/api/admin/dlq", params={"limit": value})
        plain = re.fullmatch(r"[0-9]{1,18}", value)
    else:
        response = admin_client.delete("/api/admin/dlq", params={"olderThanS": value})
        plain = re.fullmatch(r"[0-9]{1,18}(\.[0-9]{1,18})?", value)
    assert_contract_answer(response)
    if not plain:
        assert_refused(response, 400)


@FUZZ
@given(after=absurd_text, by_query=st.booleans())
def test_an_order_stream_closes_4400_on_a_hostile_after(client, resting_order, after, by_query):
    assume(not is_uint(after, 0, 999_999_999))  # a real seq: the stream opens and stays open
    encoded = quote(after, safe="")
    path = (
        f"/api/orders/execute?orderId={resting_order}&after={encoded}"
        if by_query
        else f"/ws/orders/{resting_order}?after={encoded}"
    )
    assert_websocket_refused(client, path, 4400, "invalid_after")


@FUZZ
@given(order_id=st.one_of(absurd_text, st.builds(lambda: str(uuid.uuid4()))), by_query=st.booleans())
def test_an_order_stream_closes_4400_or_4404_on_any_order_id(client, order_id, by_query):
    encoded = quote(order_id, safe="")
    if not by_query:  # only what the order stream's path serves (the router answers other paths)
        assume(order_id.strip(".") != "" and "/" not in order_id)
    path = f"/api/orders/execute?orderId={encoded}" if by_query else f"/ws/orders/{encoded}"
    if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", order_id):
        assert_websocket_refused(client, path, 4404, "order_not_found")
    else:
        assert_websocket_refused(client, path, 4400, "invalid_order_id")


@FUZZ
@given(user_id=absurd_text)
def test_the_user_stream_takes_a_plain_user_id_and_refuses_the_rest(client, user_id):
    path = f"/ws?userId={quote(user_id, safe='')}"
    plain = 1 <= len(user_id) <= 64 and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in user_id)
    if not plain:
        assert_websocket_refused(client, path, 4400, "invalid_user_id")
        return
    with client.websocket_connect(path):
        pass  # accepted: it streams until the client leaves, which it does at once


json_numbers = st.one_of(
    st.builds(
        lambda sign, digits: f"{sign}1e{digits}", st.sampled_from(["", "-"]), st.from_regex(r"\A-?[1-9][0-9]{28,59}\Z")
    ),
    st.builds(lambda n: "1" + "0" * n, st.integers(31, 6000)),
    st.builds(lambda n: "0." + "0" * n + "1", st.integers(40, 6000)),
    st.builds(lambda n: "150." + "0" * n, st.integers(40, 6000)),
)


@FUZZ
@given(field=st.sampled_from(["amount", "limitPrice", "slippage", "expiresAt", "slippageBps"]), number=json_numbers)
def test_a_json_number_out_of_range_is_refused(client, redis_url, field, number):
    before = order_count(redis_url)
    content = json.dumps({**LIMIT, field: "<number>"}).replace('"<number>"', number)  # a number JSON may spell
    response = client.post("/api/orders/execute", content=content, headers={"content-type": "application/json"})
    assert_refused(response)
    assert order_count(redis_url) == before


@st.composite
def mangled_bodies(draw) -> bytes:
    """A valid order body's bytes with a few bytes inserted, replaced or a field repeated: raw input that no
    schema describes (invalid UTF-8, other encodings, control bytes, duplicate fields, broken syntax)."""
    body = bytearray(json.dumps(draw(st.sampled_from([MARKET, LIMIT, SNIPER]))).encode())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(body)))
        piece = draw(
            st.one_of(
                st.binary(min_size=1, max_size=4),
                st.sampled_from([b'"amount":"9",', b'"type":"limit",', b"\x00", b"\xef\xbb\xbf", b"\\ud800", b"["]),
            )
        )
        body[at:at] = piece
    return bytes(body)


@FUZZ
@given(content=mangled_bodies())
def test_a_mangled_body_is_answered_with_an_order_or_a_clean_4xx(client, content):
    response = client.post("/api/orders/execute", content=content, headers={"content-type": "application/json"})
    assert_contract_answer(response)
