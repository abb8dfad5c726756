"""Pools that move, through the real services: a large market order pushes BEST through a resting limit order,
which triggers once; an order its price never reaches stays resting."""

import asyncio
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from shared import redis_keys
from shared.redis_client import redis_client
from tests.support.orders import assert_gapless_and_legal
from tests.support.ws import collect

LIMIT_PATH = ["pending", "waiting", "triggered", "routing", "building", "submitted", "confirmed"]
#: Slow arbitrage, so the push outlasts the limit worker's next ticks on a slow machine.
HALF_LIFE_S = "120"


@pytest.fixture(scope="module")
def engine(engines):
    return engines.get("moving-pools", SIM_ARBITRAGE_HALF_LIFE_S=HALF_LIFE_S)


@pytest.fixture
async def quotes(engine_redis_settings):
    # Not the `redis` fixture: that one empties the suite's database, which may be the engine's.
    client = redis_client(engine_redis_settings)
    yield client
    await client.aclose()


async def best_price(quotes: Redis, pair: str) -> Decimal:
    async with asyncio.timeout(15):
        while (price := await quotes.hget(redis_keys.quotes(*pair.split("-"), "BEST"), "price")) is None:
            await asyncio.sleep(0.1)
    return Decimal(price.decode())


async def submit(http, body: dict) -> str:
    response = await http.post("/api/orders/execute", json=body)
    assert response.status_code == 200, response.text
    return response.json()["orderId"]


async def sell_sol(engine, http, amount: str) -> dict:
    order_id = await submit(http, {"tokenIn": "SOL", "tokenOut": "USDC", "amount": amount, "slippageBps": 300})
    messages, _ = await collect(f"{engine.ws_url}/ws/orders/{order_id}", 30)
    assert messages[-1]["status"] == "confirmed", messages[-1]
    return messages[1]  # routing


async def test_a_large_swap_pushes_best_through_a_resting_limit_order_which_triggers_once(engine, http, quotes):
    before = await best_price(quotes, "USDC-SOL")
    near, far = before * Decimal("1.01"), before * Decimal("1.5")  # SOL 1 % cheaper than now; 33 % cheaper
    buy = {"type": "limit", "tokenIn": "USDC", "tokenOut": "SOL", "amount": "1000", "slippageBps": 300}
    near_id = await submit(http, {**buy, "limitPrice": f"{near:.9f}"})
    far_id = await submit(http, {**buy, "limitPrice": f"{far:.9f}"})
    await asyncio.sleep(1)
    assert (await http.get(f"/api/orders/{near_id}")).json()["status"] == "waiting"

    routing = await sell_sol(engine, http, "5000")  # about $750k into $20M pools: SOL falls a few percent
    assert Decimal(routing["priceImpactPct"]) > 1
    async with asyncio.timeout(10):  # the quote stream's next round prices the moved pools
        while await best_price(quotes, "USDC-SOL") <= near:
            await asyncio.sleep(0.1)

    messages, code = await collect(f"{engine.ws_url}/ws/orders/{near_id}", 30)
    assert code == 1000 and [m["status"] for m in messages] == LIMIT_PATH
    assert_gapless_and_legal(messages)
    assert Decimal(messages[2]["triggerPrice"]) >= near

    await sell_sol(engine, http, "5000")  # through the limit price again: the order has had its one trigger
    await asyncio.sleep(1)
    events = (await http.get(f"/api/orders/{near_id}")).json()
    assert events["status"] == "confirmed"
    far_order = (await http.get(f"/api/orders/{far_id}")).json()
    assert far_order["status"] == "waiting"  # its price was never reached
    replay, _ = await collect(f"{engine.ws_url}/ws/orders/{near_id}", 5)
    assert [m["status"] for m in replay].count("triggered") == 1
