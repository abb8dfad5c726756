"""GET /api/quote against a real Redis: the contract's fields, a split for a large amount, the submission's
validation, and honest refusals while no pool state is cached."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import pytest
from fastapi.testclient import TestClient
from redis.asyncio import Redis

from services.api.app import create_app
from shared import redis_keys
from shared.quote_cache import QuoteCache, QuotePoller
from shared.venues.base import Dex
from shared.venues.ledger import InMemoryLedger
from shared.venues.pool_state import pool_from_json
from shared.venues.simulated import SimulatedVenue, load_sim_config

FIELDS = {
    "tokenIn", "tokenOut", "inAmount", "outAmount", "otherAmountThreshold", "slippageBps", "priceImpactPct",
    "routePlan", "contextSlot", "quotedAt", "expiresAt",
}  # fmt: skip


@pytest.fixture
def client(redis, settings):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def stream_one_round(client: TestClient, settings) -> None:
    """One quote-stream round for every default pair, as the service writes it."""

    async def poll() -> None:
        redis = Redis.from_url(settings.redis_url)
        sim = await load_sim_config(redis, settings)
        venues = [SimulatedVenue(dex, sim, InMemoryLedger()) for dex in Dex]
        await QuotePoller(venues, QuoteCache(redis), settings.pairs, Decimal(100)).poll_once()
        await redis.aclose()

    client.portal.call(poll)


def cached_pool_outputs(client: TestClient, settings, amount: Decimal) -> dict[str, Decimal]:
    async def read() -> dict[str, Decimal]:
        redis = Redis.from_url(settings.redis_url)
        outputs = {}
        for venue in ("RAYDIUM", "METEORA"):
            state = await redis.hget(redis_keys.quotes("SOL", "USDC", venue), "pool")
            outputs[venue.lower()] = pool_from_json(state).amount_out(amount).quantize(Decimal("1e-6"), ROUND_DOWN)
        await redis.aclose()
        return outputs

    return client.portal.call(read)


def test_a_quote_has_the_contracts_fields_and_adds_up(client, settings):
    stream_one_round(client, settings)
    answer = client.get("/api/quote", params={"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "slippageBps": "50"})
    assert answer.status_code == 200, answer.text
    quote = answer.json()
    assert set(quote) == FIELDS
    assert (quote["tokenIn"], quote["tokenOut"], quote["inAmount"], quote["slippageBps"]) == ("SOL", "USDC", "1", 50)
    legs = quote["routePlan"]
    assert sum(leg["percent"] for leg in legs) == 100
    assert sum(Decimal(leg["inAmount"]) for leg in legs) == 1
    assert sum(Decimal(leg["outAmount"]) for leg in legs) == Decimal(quote["outAmount"]) > 0
    expected = (Decimal(quote["outAmount"]) * Decimal("0.995")).quantize(Decimal("1e-6"), rounding=ROUND_DOWN)
    assert Decimal(quote["otherAmountThreshold"]) == expected
    assert 0 <= Decimal(quote["priceImpactPct"]) < 1
    assert isinstance(quote["contextSlot"], int) and quote["contextSlot"] >= 0
    assert quote["quotedAt"] < quote["expiresAt"] and quote["quotedAt"].endswith("Z")
    singles = cached_pool_outputs(client, settings, Decimal(1))
    assert Decimal(quote["outAmount"]) >= max(singles.values())


def test_a_large_amount_splits_across_both_venues_and_beats_each(client, settings):
    stream_one_round(client, settings)
    quote = client.get("/api/quote", params={"tokenIn": "SOL", "tokenOut": "USDC", "amount": "2000"}).json()
    assert {leg["dex"] for leg in quote["routePlan"]} == {"raydium", "meteora"}
    singles = cached_pool_outputs(client, settings, Decimal(2000))
    assert Decimal(quote["outAmount"]) > max(singles.values())
    assert Decimal(quote["priceImpactPct"]) > 0


def test_the_other_direction_of_a_streamed_pair_is_quoted_on_the_same_pools(client, settings):
    stream_one_round(client, settings)
    quote = client.get("/api/quote", params={"tokenIn": "USDC", "tokenOut": "SOL", "amount": "150"}).json()
    assert Decimal(quote["outAmount"]) > 0 and quote["tokenOut"] == "SOL"


@pytest.mark.parametrize(
    "params",
    [
        {"tokenIn": "SOL", "tokenOut": "USDC"},
        {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "-1"},
        {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "abc"},
        {"tokenIn": "NOPE", "tokenOut": "USDC", "amount": "1"},
        {"tokenIn": "SOL", "tokenOut": "SOL", "amount": "1"},
        {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "slippageBps": "fifty"},
        {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "slippageBps": "99999"},
        {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "slippageBps": "-1"},
    ],
    ids=[
        "no-amount",
        "negative",
        "not-a-number",
        "unknown-token",
        "same-token",
        "slippage-text",
        "slippage-high",
        "slippage-negative",
    ],  # fmt: skip
)
def test_bad_input_is_refused_as_an_order_submission_would_be(client, settings, params):
    stream_one_round(client, settings)
    body = {"type": "market", **params}
    if "slippageBps" in body and body["slippageBps"].lstrip("-").isdigit():
        body["slippageBps"] = int(body["slippageBps"])
    submitted = client.post("/api/orders/execute", json=body)
    quoted = client.get("/api/quote", params=params)
    assert quoted.status_code == submitted.status_code == 400
    assert quoted.json()["error"] == submitted.json()["error"]


def test_no_quote_before_the_stream_cached_the_pools_nor_for_a_pair_it_does_not_stream(client):
    waiting = client.get("/api/quote", params={"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"})
    assert waiting.status_code == 503 and waiting.json()["error"] == "no_quotes"
    assert waiting.headers["Retry-After"] == "1"
    unstreamed = client.get("/api/quote", params={"tokenIn": "USDT", "tokenOut": "JUP", "amount": "1"})
    assert unstreamed.status_code == 400 and unstreamed.json()["error"] == "pair_not_streamed"


def test_a_venue_that_missed_its_round_is_left_out_of_the_route(client, settings):
    stream_one_round(client, settings)

    async def mark_meteora_stale() -> None:
        redis = Redis.from_url(settings.redis_url)
        await redis.hset(redis_keys.quotes("SOL", "USDC", "METEORA"), "stale", "1")
        await redis.aclose()

    client.portal.call(mark_meteora_stale)
    quote = client.get("/api/quote", params={"tokenIn": "SOL", "tokenOut": "USDC", "amount": "2000"}).json()
    assert [leg["dex"] for leg in quote["routePlan"]] == ["raydium"]
