"""The quote stream's polling round on a real Redis: per-venue and BEST hashes, ticks, stale quotes."""

import time
from decimal import Decimal

from shared import redis_keys
from shared.quote_cache import QuoteCache, QuotePoller, reference_amount
from shared.venues.base import Dex, VenueUnavailable
from shared.venues.ledger import InMemoryLedger
from shared.venues.simulated import SimConfig, SimulatedVenue

SIM = SimConfig(seed="quotes", epoch=time.time() - 60, latency_scale=Decimal(0), failure_rate=Decimal(0))


class SwitchableVenue(SimulatedVenue):
    down = False

    async def quote(self, *args):
        if self.down:
            raise VenueUnavailable(f"{self.dex} is down")
        return await super().quote(*args)

    async def quote_many(self, requests):
        if self.down:
            raise VenueUnavailable(f"{self.dex} is down")
        return await super().quote_many(requests)


async def hash_of(redis, pair, venue):
    raw = await redis.hgetall(redis_keys.quotes(*pair, venue))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_a_round_writes_both_venues_the_best_and_a_tick(redis):
    venues = [SwitchableVenue(dex, SIM, InMemoryLedger()) for dex in Dex]
    poller = QuotePoller(venues, QuoteCache(redis), [("SOL", "USDC"), ("USDC", "SOL")], Decimal(100))
    await poller.poll_once()
    raydium, meteora, best = [await hash_of(redis, ("SOL", "USDC"), v) for v in ("RAYDIUM", "METEORA", "BEST")]
    for quote in (raydium, meteora, best):
        assert {"price", "fee", "liquidity", "ts", "amountOut"} <= set(quote) and quote["stale"] == "0"
    winner = max((raydium, meteora), key=lambda q: Decimal(q["amountOut"]))
    assert best["dex"] == winner["dex"] and best["amountOut"] == winner["amountOut"]
    assert Decimal(raydium["amountIn"]) == reference_amount("SOL", Decimal(100))
    ticks = await redis.xrange(redis_keys.TICKS_STREAM)
    assert {fields[b"pair"] for _, fields in ticks} == {b"SOL-USDC", b"USDC-SOL"}


async def test_a_failing_venue_keeps_its_last_good_quote_marked_stale(redis):
    raydium, meteora = (SwitchableVenue(dex, SIM, InMemoryLedger()) for dex in (Dex.RAYDIUM, Dex.METEORA))
    poller = QuotePoller([raydium, meteora], QuoteCache(redis), [("SOL", "USDC")], Decimal(100))
    await poller.poll_once()
    good = await hash_of(redis, ("SOL", "USDC"), "METEORA")
    meteora.down = True
    time.sleep(0.01)
    await poller.poll_once()
    stale = await hash_of(redis, ("SOL", "USDC"), "METEORA")
    assert stale["stale"] == "1" and stale["ts"] == good["ts"] and stale["price"] == good["price"]
    best = await hash_of(redis, ("SOL", "USDC"), "BEST")
    assert best["dex"] == "raydium" and float(best["ts"]) > float(good["ts"])
