"""The quote cache: what the quote stream writes to `quotes:{pair}:{VENUE|BEST}` and the tick it publishes.

Pure functions decide what to write; `QuoteCache.publish` writes one polling round in one round trip.
A venue that fails keeps its last good quote in the cache, marked stale, so readers see its age grow
instead of the price vanishing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from redis.asyncio import Redis

from shared import redis_keys
from shared.domain import tokens
from shared.routing import choose_best
from shared.venues.base import Dex, Quote, Venue, VenueUnavailable

VENUE_KEYS = {Dex.RAYDIUM: "RAYDIUM", Dex.METEORA: "METEORA"}


def reference_amount(symbol: str, usd: Decimal) -> Decimal:
    """How much of `symbol` is worth `usd` at its listed price: the size every streamed quote prices."""
    token = tokens.TOKENS[symbol]
    return (usd / token.usd_price).quantize(Decimal(1).scaleb(-token.decimals), rounding=ROUND_DOWN)


def quote_fields(quote: Quote, *, stale: bool = False) -> dict[str, str]:
    return {
        "dex": quote.dex.value,
        "price": str(quote.price),
        "midPrice": str(quote.mid_price),
        "fee": str(quote.fee),
        "liquidity": str(quote.liquidity),
        "amountIn": str(quote.amount_in),
        "amountOut": str(quote.amount_out),
        "priceImpact": str(quote.price_impact),
        "ts": repr(quote.ts),
        "stale": "1" if stale else "0",
    }


@dataclass(frozen=True, slots=True)
class PairRound:
    """One pair's result of one polling round: fresh quotes, and the last good quotes of venues that
    failed to answer this time (rewritten marked stale, with their original `ts`)."""

    token_in: str
    token_out: str
    fresh: list[Quote]
    stale: list[Quote]


class QuoteCache:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def publish(self, rounds: list[PairRound]) -> None:
        # The hset ignores: redis-py types `mapping` as Mapping[FieldT, EncodableT], whose key type is
        # invariant, so no dict[str, str] matches it although hset accepts one.
        async with self.redis.pipeline(transaction=False) as pipe:
            for result in rounds:
                for quote in result.fresh:
                    key = redis_keys.quotes(result.token_in, result.token_out, VENUE_KEYS[quote.dex])
                    pipe.hset(key, mapping=quote_fields(quote))  # type: ignore[arg-type]
                for quote in result.stale:
                    key = redis_keys.quotes(result.token_in, result.token_out, VENUE_KEYS[quote.dex])
                    pipe.hset(key, mapping=quote_fields(quote, stale=True))  # type: ignore[arg-type]
                if not result.fresh:
                    continue
                best = choose_best(result.fresh).best  # BEST is what the router would pick
                best_key = redis_keys.quotes(result.token_in, result.token_out, "BEST")
                pipe.hset(best_key, mapping=quote_fields(best))  # type: ignore[arg-type]
                pipe.xadd(
                    redis_keys.TICKS_STREAM,
                    {
                        "pair": f"{result.token_in}-{result.token_out}",
                        "price": str(best.price),
                        "dex": best.dex.value,
                        "ts": repr(best.ts),
                    },
                    maxlen=redis_keys.TICKS_MAXLEN,
                    approximate=True,
                )
            await pipe.execute()


class QuotePoller:
    """One polling round = every pair quoted by every venue at once, then one cache write."""

    def __init__(
        self, venues: list[Venue], cache: QuoteCache, pairs: list[tuple[str, str]], reference_usd: Decimal
    ) -> None:
        self.venues = venues
        self.cache = cache
        self.pairs = pairs
        self.reference_usd = reference_usd
        self.last_good: dict[tuple[str, str, Dex], Quote] = {}

    async def _pair_round(self, token_in: str, token_out: str) -> PairRound:
        amount = reference_amount(token_in, self.reference_usd)
        results = await asyncio.gather(
            *(venue.quote(token_in, token_out, amount) for venue in self.venues), return_exceptions=True
        )
        fresh, stale = [], []
        for venue, result in zip(self.venues, results, strict=True):
            if isinstance(result, Quote):
                fresh.append(result)
                self.last_good[(token_in, token_out, venue.dex)] = result
            elif isinstance(result, VenueUnavailable):
                previous = self.last_good.get((token_in, token_out, venue.dex))
                if previous is not None:
                    stale.append(previous)
            else:
                raise result
        return PairRound(token_in, token_out, fresh, stale)

    async def poll_once(self) -> list[PairRound]:
        rounds = await asyncio.gather(*(self._pair_round(a, b) for a, b in self.pairs))
        await self.cache.publish(list(rounds))
        return list(rounds)
