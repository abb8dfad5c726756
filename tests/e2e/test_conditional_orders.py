"""Stop, trailing-stop and OCO orders through the real services, watched over a real WebSocket: each fires on
the live BEST price, executes once, shows its trailing level while it rests, cancels, and lands in history."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from tests.support.orders import assert_gapless_and_legal
from tests.support.ws import collect

RESTING_PATH = ["pending", "waiting", "triggered", "routing", "building", "submitted", "confirmed"]


async def submit(http, order_type: str, **fields) -> str:
    body = {"type": order_type, "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "slippageBps": 200, **fields}
    response = await http.post("/api/orders/execute", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["type"] == order_type and response.json()["status"] == "pending"
    return response.json()["orderId"]


async def test_a_stop_above_the_market_fires_on_the_next_tick_and_confirms(engine, http):
    order_id = await submit(http, "stop", stopPrice="1000000")  # BEST ≤ 1,000,000 USDC: already true
    messages, code = await collect(f"{engine.ws_url}/ws/orders/{order_id}", 30)
    assert code == 1000 and [m["status"] for m in messages] == RESTING_PATH
    assert_gapless_and_legal(messages)
    waiting, triggered = messages[1], messages[2]
    assert waiting["stopPrice"] == "1000000" and triggered["trigger"] == "stop"
    assert Decimal(triggered["triggerPrice"]) <= 1_000_000 and "highWaterMark" not in triggered


async def test_an_oco_takes_profit_and_never_stops_out(engine, http):
    order_id = await submit(http, "oco", takeProfitPrice="1", stopPrice="0.5")
    messages, code = await collect(f"{engine.ws_url}/ws/orders/{order_id}", 30)
    assert code == 1000 and [m["status"] for m in messages] == RESTING_PATH
    triggered = messages[2]
    assert triggered["trigger"] == "take_profit" and Decimal(triggered["triggerPrice"]) >= 1
    assert [m["status"] for m in messages].count("triggered") == 1


async def test_a_resting_trailing_stop_shows_its_live_level_and_cancels(engine, http):
    order_id = await submit(http, "trailing_stop", trailBps=5000)  # 50 %: never fires in this test
    async with asyncio.timeout(10):
        while not (view := (await http.get(f"/api/orders/{order_id}")).json()).get("armed"):
            await asyncio.sleep(0.1)
    high, level = Decimal(view["highWaterMark"]), Decimal(view["stopLevel"])
    assert view["status"] == "waiting" and view["trailBps"] == 5000 and level == high / 2
    cancelled = await http.delete(f"/api/orders/{order_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    messages, code = await collect(f"{engine.ws_url}/ws/orders/{order_id}")
    assert code == 1000 and [m["status"] for m in messages] == ["pending", "waiting", "cancelled"]
    async with asyncio.timeout(15):  # db-sync persists it with its terms
        while True:
            page = (await http.get("/api/orders", params={"type": "trailing_stop", "status": "cancelled"})).json()
            if mine := [o for o in page["orders"] if o["orderId"] == order_id]:
                break
            await asyncio.sleep(0.1)
    assert mine[0]["trailBps"] == 5000 and mine[0]["stopPrice"] is None


async def test_fields_of_another_type_are_refused(engine, http):
    body = {"type": "stop", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "stopPrice": "1", "limitPrice": "2"}
    refused = await http.post("/api/orders/execute", json=body)
    assert refused.status_code == 400 and refused.json()["error"] == "forbidden_field"
    assert "limitPrice" in refused.json()["message"]
