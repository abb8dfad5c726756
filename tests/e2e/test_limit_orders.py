"""Limit orders through the real services: trigger and confirm, cancel while resting, 404/409s."""

import asyncio
import uuid

from tests.support.orders import assert_gapless_and_legal
from tests.support.ws import collect

LIMIT_PATH = ["pending", "waiting", "triggered", "routing", "building", "submitted", "confirmed"]


async def submit_limit(http, limit_price: str, **fields) -> str:
    body = {
        "type": "limit",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "1",
        "limitPrice": limit_price,
        "slippageBps": 200,
        **fields,
    }
    response = await http.post("/api/orders/execute", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "limit" and response.json()["status"] == "pending"
    return response.json()["orderId"]


async def history_ids(http, **filters) -> list[str]:
    page = (await http.get("/api/orders", params={"limit": 500, **filters})).json()
    return [order["orderId"] for order in page["orders"]]


async def test_a_limit_order_below_market_triggers_and_confirms(engine, http):
    order_id = await submit_limit(http, "1")  # selling SOL for at least 1 USDC: crossed on the next tick
    messages, code = await collect(f"{engine.ws_url}/ws/orders/{order_id}", 30)
    assert code == 1000 and [m["status"] for m in messages] == LIMIT_PATH
    assert_gapless_and_legal(messages)
    triggered, confirmed = messages[2], messages[-1]
    assert float(triggered["triggerPrice"]) >= 1 and triggered["limitPrice"] == "1"
    assert float(confirmed["executedPrice"]) >= 1 and all(m["orderType"] == "limit" for m in messages)


async def test_a_resting_limit_order_cancels_once(engine, http):
    order_id = await submit_limit(http, "1000000")
    cancelled = await http.delete(f"/api/orders/{order_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    messages, code = await collect(f"{engine.ws_url}/ws/orders/{order_id}")
    assert code == 1000 and [m["status"] for m in messages] == ["pending", "waiting", "cancelled"]
    again = await http.delete(f"/api/orders/{order_id}")
    assert again.status_code == 409 and again.json()["error"] == "not_cancellable"
    assert (await http.delete(f"/api/orders/{uuid.uuid4()}")).status_code == 404
    async with asyncio.timeout(15):  # db-sync persists the terminal event too
        while order_id not in await history_ids(http, status="cancelled", type="limit"):
            await asyncio.sleep(0.1)


async def test_a_market_order_cannot_be_cancelled(engine, http):
    response = await http.post("/api/orders/execute", json={"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"})
    order_id = response.json()["orderId"]
    refused = await http.delete(f"/api/orders/{order_id}")
    assert refused.status_code == 409 and refused.json()["success"] is False
