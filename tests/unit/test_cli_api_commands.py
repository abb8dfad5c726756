"""The CLI's API commands in pieces: the client-side order checks are the API's own, the lifecycle display,
error mapping, and the WebSocket follower's resume after a dropped socket (against a real local socket)."""

import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
import typer
from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from services.api.errors import ApiError, from_validation
from services.api.routes.orders import _check_idempotency_key
from services.cli import display as display_module
from services.cli import follow as follow_module
from services.cli.api_client import ApiClient
from services.cli.display import describe, event_line, summary
from services.cli.errors import CliError, ExitCode
from services.cli.follow import Outcome, follow
from services.cli.submit import OrderType, check_order, order_body
from shared.domain import orders as domain
from shared.domain.idempotency import RESERVED_PREFIX
from shared.domain.lifecycle import TERMINAL, OrderStatus, can_transition


def test_the_cli_takes_its_domain_values_from_shared_domain():
    """One source of truth: the CLI's order types, terminal statuses and progress paths are shared/domain's."""
    assert OrderType is domain.OrderType
    assert set(follow_module.TERMINAL_EXIT) == set(TERMINAL)
    assert set(display_module.HAPPY_PATHS) == set(domain.OrderType)
    assert set(display_module.DESCRIPTIONS) == set(OrderStatus)
    assert set(display_module.STATUS_STYLES) <= set(OrderStatus)
    for path in display_module.HAPPY_PATHS.values():
        assert all(can_transition(a, b) for a, b in zip((None, *path), path, strict=False))
        assert path[-1] in TERMINAL
    # The reserved Idempotency-Key prefix is the API's: the CLI refuses exactly what the API would.
    with pytest.raises(CliError, match="reserved"):
        check_order(order_body("SOL", "USDC", "1"), f"{RESERVED_PREFIX}x")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {"type": "market"}),
        ({"limit_price": "155"}, {"type": "limit", "limitPrice": "155"}),
        ({"listing": True}, {"type": "sniper", "trigger": {"kind": "listing"}}),
        ({"min_liquidity": "1e5"}, {"type": "sniper", "trigger": {"kind": "liquidity", "minLiquidity": "1e5"}}),
        ({"order_type": OrderType.MARKET, "limit_price": "1"}, {"type": "market", "limitPrice": "1"}),
        ({"slippage_bps": 0, "user_id": "u", "client_order_id": "c"}, {"slippageBps": 0, "userId": "u"}),
    ],
)
def test_the_body_follows_the_options(options, expected):
    body = order_body("SOL", "USDC", "1", **options)
    assert {**body, **expected} == body and {
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "1",
    }.items() <= body.items()


def test_a_sniper_order_waits_for_one_trigger():
    with pytest.raises(typer.BadParameter):
        order_body("SOL", "WIF", "1", listing=True, min_liquidity="5")


BAD_BODIES = [
    {"tokenIn": "SOL", "tokenOut": "NOPE", "amount": "1"},
    {"tokenIn": "SOL", "tokenOut": "wSOL", "amount": "1"},
    {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "-1"},
    {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "abc"},
    {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.0000000001"},
    {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "slippageBps": 9000},
    {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "slippage": "0.01", "slippageBps": 10},
    {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"},
    {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": "1"},
    {"type": "sniper", "tokenIn": "SOL", "tokenOut": "WIF", "amount": "1"},
    {"type": "sniper", "tokenIn": "SOL", "tokenOut": "WIF", "amount": "1", "trigger": {"kind": "liquidity"}},
    {
        "type": "limit",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "1",
        "limitPrice": "1",
        "expiresAt": "2001-01-01T00:00:00Z",
    },
    {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "userId": "x" * 65},
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_the_client_side_check_gives_the_apis_code_and_message(body):
    try:
        domain.OrderRequest.model_validate(body)
    except ValidationError as exc:
        api = from_validation(exc)
    with pytest.raises(CliError) as refused:
        check_order(body, None)
    assert refused.value.code == api.code and refused.value.exit_code is ExitCode.FAILED
    assert api.message in refused.value.message and refused.value.details == api.details


@pytest.mark.parametrize("key", ["", "x" * 129, "tab\there", "replay:123", "é"])
def test_idempotency_keys_are_checked_as_the_api_checks_them(key):
    with pytest.raises(ApiError) as api:
        _check_idempotency_key(key)
    with pytest.raises(CliError) as cli:
        check_order({"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}, key)
    assert cli.value.code == api.value.code and api.value.message in cli.value.message


def test_a_valid_order_passes_the_check():
    check_order(order_body("SOL", "USDC", "1.5", slippage_bps=50, client_order_id="c-1"), "key-1")


ORDER = {"orderId": "o-1", "type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}


def event(seq: int, status: str, **fields) -> dict:
    return {"type": "status", "orderId": "o-1", "seq": seq, "status": status, "timestamp": "2030-01-01T12:00:00.250Z",
            "orderType": "market", "attempt": None, **fields}  # fmt: skip


def test_each_event_says_what_happened():
    quotes = {"raydium": {"price": "150.1", "amountOut": "225", "fee": "0.0025"},
              "meteora": {"price": "149.9", "amountOut": "224.8", "fee": "0.003"}}  # fmt: skip
    routed = describe(event(2, "routing", attempt=1, dex="raydium", quotes=quotes), ORDER)
    assert routed == "quotes raydium 150.1 (out 225, fee 0.0025), meteora 149.9 (out 224.8, fee 0.003) → raydium"
    built = describe(event(3, "building", attempt=1, dex="raydium", transaction={"minAmountOut": "223.9"}))
    assert built == "transaction on raydium, min out 223.9"
    legs = [{"dex": "raydium", "inAmount": "1400"}, {"dex": "meteora", "inAmount": "600"}]
    split = describe(event(3, "building", dex="raydium", transaction={"minAmountOut": "29000", "legs": legs}))
    assert split == "transaction on raydium + meteora, min out 29000"
    confirmed = describe(event(5, "confirmed", dex="raydium", txHash="T", executedPrice="150", amountOut="225"), ORDER)
    assert confirmed == "price 150, out 225 USDC on raydium, tx T"
    failed = describe(event(9, "failed", attempt=3, error="venue_unavailable", errorMessage="gave up after 3 attempts"))
    assert failed == "venue_unavailable: gave up after 3 attempts"
    assert describe(event(2, "waiting", limitPrice="155")) == "resting until the BEST price reaches 155"
    waiting = describe(event(2, "waiting", trigger={"kind": "liquidity", "minLiquidity": "5"}), {"tokenOut": "WIF"})
    assert waiting == "resting until a pool holds 5 WIF"
    assert describe(event(3, "triggered", triggerPrice="156", limitPrice="155")) == (
        "BEST price 156 crossed the limit 155"
    )
    fired = describe(event(3, "triggered", venueEvent={"kind": "pool_created", "dex": "meteora", "id": "WIF-SOL:1"}))
    assert fired == "pool_created on meteora (WIF-SOL:1)"
    line = event_line(event(4, "routing", attempt=2, dex="meteora", quotes={})).plain
    assert line.split()[:5] == ["4", "12:00:00.250", "routing", "attempt", "2"]


QUOTES = {"raydium": {"price": "150.1", "amountOut": "225", "fee": "0.0025"}}
QUOTED = "quotes raydium 150.1 (out 225, fee 0.0025)"


def leg(dex: str, percent: int) -> dict:
    return {"dex": dex, "percent": percent, "inAmount": "1", "outAmount": "150", "fee": "0.0025"}


def test_a_routing_to_one_venue_shows_it_its_impact_and_min_out_then_the_quotes():
    route = {"routePlan": [leg("meteora", 100)], "priceImpactPct": "0.02", "otherAmountThreshold": "223.9"}
    routed = event(2, "routing", attempt=1, dex="meteora", quotes=QUOTES, expiresAt="2030-01-01T12:00:02Z", **route)
    assert describe(routed, ORDER) == f"meteora 100%, impact 0.02 %, min out 223.9, {QUOTED}"


def test_a_split_routing_shows_each_venues_share():
    plan = [leg("raydium", 62), leg("meteora", 38)]
    route = {"routePlan": plan, "priceImpactPct": "0.41", "otherAmountThreshold": "1234.5"}
    routed = event(2, "routing", attempt=1, dex="raydium", quotes=QUOTES, **route)
    assert describe(routed, ORDER) == f"split raydium 62% / meteora 38%, impact 0.41 %, min out 1234.5, {QUOTED}"
    again = {**routed, "requoted": True, "priceImpactPct": None, "otherAmountThreshold": None, "quotes": None}
    assert describe(again, ORDER) == "re-quoted, split raydium 62% / meteora 38%"


def test_a_confirmed_split_shows_each_leg_and_the_last_line_says_it_split():
    legs = [{"dex": "raydium", "inAmount": "1240", "outAmount": "180000.1"},
            {"dex": "meteora", "inAmount": "760", "outAmount": "110000.2"}]  # fmt: skip
    confirmed = event(
        5, "confirmed", dex="raydium", txHash="T", executedPrice="145.00015", amountOut="290000.3", legs=legs
    )
    order = {**ORDER, "amount": "2000"}
    assert describe(confirmed, order) == (
        "price 145.00015, out 290000.3 USDC, split raydium 1240 → 180000.1 USDC, meteora 760 → 110000.2 USDC, tx T"
    )
    assert summary(order, Outcome("confirmed", confirmed)) == (
        "order o-1 confirmed: 2000 SOL → 290000.3 USDC at 145.00015 "
        "split over raydium 1240 SOL + meteora 760 SOL (tx T)"
    )
    one = {**confirmed, "legs": legs[:1], "amountOut": "180000.1"}  # one leg: said as before, on its venue
    assert describe(one, order) == "price 145.00015, out 180000.1 USDC on raydium, tx T"


def test_an_event_from_before_routes_reads_as_it_always_did():
    """Events stored before routePlan, legs and slot existed: the fields are absent, or null."""
    for new in (
        {},
        {"routePlan": None, "priceImpactPct": None, "otherAmountThreshold": None, "legs": None, "slot": None},
    ):
        routed = describe(event(2, "routing", attempt=1, dex="raydium", quotes=QUOTES, **new), ORDER)
        assert routed == f"{QUOTED} → raydium"
        confirmed = event(5, "confirmed", dex="raydium", txHash="T", executedPrice="150", amountOut="225", **new)
        assert describe(confirmed, ORDER) == "price 150, out 225 USDC on raydium, tx T"
        assert summary(ORDER, Outcome("confirmed", confirmed)) == (
            "order o-1 confirmed: 1.5 SOL → 225 USDC at 150 on raydium (tx T)"
        )
        assert describe(event(4, "submitted", attempt=1, txHash="T", **new)) == "tx T"
    assert describe(event(4, "submitted", attempt=1, txHash="T", slot=3021)) == "tx T, slot 3021"


def test_a_terminal_status_decides_the_exit_code_and_the_last_line():
    codes = {status: Outcome(status, None).exit_code for status in ("confirmed", "failed", "cancelled", "expired")}
    assert codes == {"confirmed": 0, "failed": 6, "cancelled": 7, "expired": 8}
    assert len(set(codes.values())) == 4
    failed = event(9, "failed", error="slippage_exceeded", errorMessage="out 1 < min 2")
    assert summary(ORDER, Outcome("failed", failed)) == "order o-1 failed (slippage_exceeded): out 1 < min 2"
    confirmed = event(5, "confirmed", dex="meteora", txHash="T", executedPrice="150", amountOut="225")
    assert summary(ORDER, Outcome("confirmed", confirmed)) == (
        "order o-1 confirmed: 1.5 SOL → 225 USDC at 150 on meteora (tx T)"
    )


def test_api_urls_and_refusals():
    client = ApiClient("https://user:pw@engine.example/base/", api_key=" k ")
    assert client.ws_url("/ws/orders/1?after=2") == "wss://user:pw@engine.example/base/ws/orders/1?after=2"
    assert client.shown_url == "https://user:***@engine.example/base" and client.auth_headers() == {
        "Authorization": "Bearer k"
    }
    body = {"success": False, "error": "unknown_token", "message": "tokenIn: unknown token", "details": [{"f": 1}]}
    refused = ApiClient.refusal(httpx.Response(400, json=body), "the API refused the order")
    assert refused.message == "the API refused the order: tokenIn: unknown token (HTTP 400 unknown_token)"
    assert (refused.exit_code, refused.code, refused.status, refused.details) == (1, "unknown_token", 400, [{"f": 1}])
    assert ApiClient.refusal(httpx.Response(404, json={"message": "no order"}), "").exit_code is ExitCode.NOT_FOUND
    overloaded = ApiClient.refusal(httpx.Response(503, headers={"Retry-After": "2"}, text="<html>"), "")
    assert overloaded.exit_code is ExitCode.UNAVAILABLE and overloaded.message.endswith("retry after 2 s")
    with pytest.raises(CliError) as bad:
        ApiClient("localhost:8000")
    assert bad.value.exit_code is ExitCode.USAGE


# --- the follower, against a real WebSocket server -------------------------------------------------------------


@contextmanager
def ws_server(handler: Callable[[ServerConnection, int], None]) -> Iterator[ApiClient]:
    """A WebSocket server on a free port; `handler(connection, after)` serves each connection."""
    requests: list[int] = []

    close_codes: list[int | None] = []

    def serve_one(connection: ServerConnection) -> None:
        after = int(parse_qs(urlsplit(connection.request.path).query).get("after", ["0"])[0])
        requests.append(after)
        handler(connection, after)
        close_codes.append(connection.close_code)

    with serve(serve_one, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        client = ApiClient(f"http://127.0.0.1:{server.socket.getsockname()[1]}")
        client.requests, client.close_codes = requests, close_codes
        try:
            yield client
        finally:
            server.shutdown()
            thread.join(5)


LIFECYCLE = [
    event(1, "pending"),
    event(2, "routing", attempt=1),
    event(3, "routing", attempt=2),
    event(4, "building", attempt=2),
    event(5, "submitted", attempt=2),
    event(6, "confirmed", attempt=2),
]


def test_the_follower_resumes_after_a_dropped_socket_without_a_gap_or_a_repeat():
    def handler(connection: ServerConnection, after: int) -> None:
        for message in LIFECYCLE[after:]:
            connection.send(orjson.dumps(message))
            if message["seq"] == 3 and after < 3:  # then the connection dies, without a close frame
                connection.socket.shutdown(socket.SHUT_RDWR)
                return
            if message["seq"] == 1:
                connection.send(orjson.dumps(message))  # a duplicate: shown once
        connection.close(1000)

    seen: list[int] = []
    with ws_server(handler) as client:
        outcome = follow(client, "o-1", lambda message: seen.append(message["seq"]), timeout_s=20)
    assert seen == [1, 2, 3, 4, 5, 6] and outcome.status == "confirmed" and outcome.event == LIFECYCLE[-1]
    assert client.requests == [0, 3]  # resumed after the last event seen


def test_the_follower_reports_an_unknown_order_and_a_timeout():
    def unknown(connection: ServerConnection, after: int) -> None:
        connection.send(orjson.dumps({"type": "error", "error": "order_not_found", "message": "no order o-1"}))
        connection.close(4404)

    with ws_server(unknown) as client, pytest.raises(CliError) as missing:
        follow(client, "o-1", lambda message: None)
    assert missing.value.exit_code is ExitCode.NOT_FOUND and missing.value.code == "order_not_found"
    assert "no order o-1" in missing.value.message

    def resting(connection: ServerConnection, after: int) -> None:
        connection.send(orjson.dumps(event(1, "pending")))
        connection.send(orjson.dumps(event(2, "waiting", limitPrice="1000000")))
        with contextlib.suppress(ConnectionClosed):
            connection.recv()  # until the client goes

    with ws_server(resting) as client, pytest.raises(CliError) as slow:
        follow(client, str(uuid.uuid4()), lambda message: None, timeout_s=0.5)
    assert slow.value.exit_code is ExitCode.TIMEOUT and "last status: waiting" in slow.value.message
    assert client.close_codes == [1000]  # the client said goodbye properly
