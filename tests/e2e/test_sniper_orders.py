"""Sniper orders through the real services: they fire on a simulated token launch, and execute."""

import asyncio

import pytest

from tests.support.orders import assert_gapless_and_legal
from tests.support.ws import collect

SNIPER_PATH = ["pending", "waiting", "triggered", "routing", "building", "submitted", "confirmed"]


@pytest.fixture(scope="module")
def engine(sniper_engine):
    """This module's engine (and so `http`'s) is the one with a token launch scheduled."""
    return sniper_engine


async def submit_sniper(http, trigger, **fields) -> str:
    body = {
        "type": "sniper",
        "tokenIn": "SOL",
        "tokenOut": "WIF",
        "amount": "0.1",
        "trigger": trigger,
        "slippageBps": 300,
        **fields,
    }
    response = await http.post("/api/orders/execute", json=body)
    assert response.status_code == 200, response.text
    return response.json()["orderId"]


async def test_sniper_orders_fire_on_the_launch_and_on_liquidity_then_execute(engine, http):
    # WIF has no pool yet: a market order is refused, sniper orders wait for it.
    refused = await http.post("/api/orders/execute", json={"tokenIn": "SOL", "tokenOut": "WIF", "amount": "1"})
    assert refused.status_code == 400 and refused.json()["error"] == "pair_not_listed"
    on_listing = await submit_sniper(http, {"kind": "listing"})
    on_depth = await submit_sniper(http, {"kind": "liquidity", "minLiquidity": "40000"})  # WIF, ~2nd step
    (listing_events, code1), (depth_events, code2) = await asyncio.gather(
        collect(f"{engine.ws_url}/ws/orders/{on_listing}", 60), collect(f"{engine.ws_url}/ws/orders/{on_depth}", 60)
    )
    assert code1 == code2 == 1000
    for messages in (listing_events, depth_events):
        assert [m["status"] for m in messages] == SNIPER_PATH
        assert_gapless_and_legal(messages)
    fired_by = listing_events[2]["venueEvent"]
    # The launch fires it through the quote stream's pool_created event, or through the once-a-second sweep
    # when that sees the pool (a pure function of time) before the event is published: a race both win.
    assert fired_by["kind"] == "already_met" or (
        fired_by["kind"] == "pool_created" and fired_by["id"].startswith("WIF-SOL:")
    )
    # The same race for the depth: the liquidity_changed event, or the sweep seeing the reserve first.
    depth_cause = depth_events[2]["venueEvent"]
    assert depth_cause["kind"] in ("liquidity_changed", "already_met"), depth_cause
    assert depth_events[3]["dex"] == listing_events[3]["dex"]  # routed to the only venue with a pool
    if depth_cause["kind"] == "liquidity_changed":
        assert depth_cause["dex"] == depth_events[3]["dex"]


async def test_a_resting_sniper_order_cancels(engine, http):
    order_id = await submit_sniper(http, {"kind": "liquidity", "minLiquidity": "999999999999"})
    cancelled = await http.delete(f"/api/orders/{order_id}")
    assert cancelled.status_code == 200
    messages, code = await collect(f"{engine.ws_url}/ws/orders/{order_id}")
    assert code == 1000 and [m["status"] for m in messages] == ["pending", "waiting", "cancelled"]
