"""The HTTP side of the contract, against the running API: validation, idempotency, probes, quotes."""

import asyncio
import uuid

import pytest

VALID = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}


def assert_error_body(response, status, code=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    if code:
        assert body["error"] == code
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**VALID, "tokenIn": "NOPE"}, "unknown_token"),
        ({**VALID, "tokenOut": "wSOL"}, "same_token"),
        ({**VALID, "amount": "-5"}, "invalid_amount"),
        ({**VALID, "slippage": "0.9"}, "invalid_slippage"),
        ({**VALID, "slippage": "0.01", "slippageBps": 10}, "slippage_mismatch"),
        ({**VALID, "limitPrice": "1"}, "forbidden_field"),
        ({**VALID, "surprise": True}, "extra_forbidden"),
        ({**VALID, "type": "sniper", "trigger": {"kind": "rumour"}}, "literal_error"),
        ({**VALID, "tokenOut": "POPCAT"}, "pair_not_listed"),
        ({**VALID, "type": "limit", "limitPrice": "1", "tokenIn": "USDT", "tokenOut": "JUP"}, "pair_not_streamed"),
        ({**VALID, "type": "limit", "limitPrice": "1.0000000000000001"}, "invalid_limit_price"),
        ([VALID], "invalid_body"),
        ({"tokenIn": "SOL"}, "validation_error"),
    ],
)
async def test_bad_orders_get_400_with_the_contract_body(http, body, code):
    assert_error_body(await http.post("/api/orders/execute", json=body), 400, code)


async def test_malformed_transport_gets_clean_4xx(http):
    assert_error_body(
        await http.post("/api/orders/execute", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "invalid_json",
    )
    assert_error_body(await http.post("/api/orders/execute", content=b"amount=1"), 415, "unsupported_media_type")
    for raw in (
        b'{"tokenIn":"SOL","tokenOut":"USDC","amount":1e400}',
        b'{"tokenIn":"SOL","tokenOut":"USDC","amount":NaN}',
    ):
        response = await http.post("/api/orders/execute", content=raw, headers={"content-type": "application/json"})
        assert_error_body(response, 400)
    huge = b'{"tokenIn":"SOL","tokenOut":"USDC","amount":"1","userId":"' + b"x" * 20_000 + b'"}'
    assert_error_body(
        await http.post("/api/orders/execute", content=huge, headers={"content-type": "application/json"}), 413
    )
    assert_error_body(await http.get("/api/orders/not-a-uuid"), 400)
    assert_error_body(await http.get(f"/api/orders/{uuid.uuid4()}"), 404, "order_not_found")
    assert_error_body(await http.get("/api/orders", params={"limit": 501}), 400)
    assert_error_body(await http.get("/api/orders", params={"cursor": "garbage!"}), 400, "invalid_cursor")
    assert_error_body(await http.get("/nowhere"), 404)


async def test_idempotency_key_replays_the_same_order_and_refuses_a_different_body(http):
    key = f"key-{uuid.uuid4()}"
    headers = {"Idempotency-Key": key}
    first, second = await asyncio.gather(
        http.post("/api/orders/execute", json=VALID, headers=headers),
        http.post("/api/orders/execute", json=VALID, headers=headers),
    )
    assert first.status_code == second.status_code == 200
    assert first.json()["orderId"] == second.json()["orderId"]
    assert "true" in {first.headers.get("Idempotent-Replayed"), second.headers.get("Idempotent-Replayed")}
    conflict = await http.post("/api/orders/execute", json={**VALID, "amount": "2"}, headers=headers)
    assert_error_body(conflict, 409, "idempotency_conflict")
    assert_error_body(await http.post("/api/orders/execute", json=VALID, headers={"Idempotency-Key": "x" * 129}), 400)


async def test_probes_metrics_docs_and_quotes(http):
    assert (await http.get("/health")).json()["status"] == "ok"
    ready = await http.get("/ready")
    assert ready.status_code == 200 and ready.json()["redis"] == ready.json()["postgres"] == "ok"
    await http.post("/api/orders/execute", json=VALID)
    metrics = (await http.get("/metrics")).text
    assert 'engine_orders_accepted_total{type="market"}' in metrics
    assert "engine_execution_queue_depth" in metrics
    assert (await http.get("/docs")).status_code == 200
    schema = (await http.get("/openapi.json")).json()
    assert "/api/orders/execute" in schema["paths"]
    async with asyncio.timeout(10):
        while (quotes := await http.get("/api/quotes/SOL-USDC")).status_code != 200:
            await asyncio.sleep(0.1)
    body = quotes.json()
    assert set(body["venues"]) == {"raydium", "meteora"}
    assert body["best"]["dex"] in body["venues"] and body["best"]["ageMs"] >= 0
    for quote in (body["best"], *body["venues"].values()):
        assert {"price", "fee", "liquidity", "ts"} <= set(quote)
    assert_error_body(await http.get("/api/quotes/SOL-NOPE"), 400, "unknown_token")
    assert_error_body(await http.get("/api/quotes/SOLUSDC"), 400, "invalid_pair")
