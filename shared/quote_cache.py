"""The quote cache: what the quote stream writes to `quotes:{pair}:{VENUE|BEST}` and the tick it publishes.

Pure functions decide what to write; `QuoteCache.publish` writes one polling round in one script.
A venue that fails keeps its last good quote in the cache, marked stale, so readers see its age grow
instead of the price vanishing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from redis.asyncio import Redis

from shared import redis_keys
from shared.domain import tokens
from shared.redis_cluster import ClusterRedis
from shared.route_quote import CachedPool
from shared.routing import choose_best
from shared.venues.base import Dex, Quote, QuoteRequest, Venue, VenueUnavailable
from shared.venues.pool_state import pool_from_json, pool_to_json

VENUE_KEYS = {Dex.RAYDIUM: "RAYDIUM", Dex.METEORA: "METEORA"}


def reference_amount(symbol: str, usd: Decimal) -> Decimal:
    """How much of `symbol` is worth `usd` at its listed price: the size every streamed quote prices."""
    token = tokens.TOKENS[symbol]
    return (usd / token.usd_price).quantize(token.unit, rounding=ROUND_DOWN)


def quote_fields(quote: Quote, *, stale: bool = False) -> dict[str, str]:
    fields = {
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
    if quote.pool is not None:
        fields["pool"] = pool_to_json(quote.pool)
    return fields


@dataclass(frozen=True, slots=True)
class PairRound:
    """One pair's result of one polling round: fresh quotes, and the last good quotes of venues that
    failed to answer this time (rewritten marked stale, with their original `ts`)."""

    token_in: str
    token_out: str
    fresh: list[Quote]
    stale: list[Quote]


#: One polling round in one script: a reply to parse instead of one per hash and tick (redis-py's per-reply
#: cost was most of an idle round), and readers never see BEST from another round than the venues' hashes.
_PUBLISH_ROUND = """
local at = 2
for i = 1, #KEYS - 1 do
  local n = tonumber(ARGV[at])
  redis.call('HSET', KEYS[i], unpack(ARGV, at + 1, at + n))
  at = at + n + 1
end
while at <= #ARGV do
  redis.call('XADD', KEYS[#KEYS], 'MAXLEN', '~', ARGV[1], '*',
    'pair', ARGV[at], 'price', ARGV[at + 1], 'dex', ARGV[at + 2], 'ts', ARGV[at + 3])
  at = at + 4
end
return #KEYS - 1
"""


#: One round's writes: each hash (key, fields) in write order, and each pair's tick (stream fields).
RoundWrites = tuple[list[tuple[str, dict[str, str]]], list[dict[str, str]]]


def round_writes(rounds: list[PairRound]) -> RoundWrites:
    """What one round writes: each pair's venue hashes (fresh, or stale with their original `ts`), its BEST
    hash and its tick; BEST and the tick only for pairs some venue answered."""
    hashes: list[tuple[str, dict[str, str]]] = []
    ticks: list[dict[str, str]] = []
    for result in rounds:
        for quote, stale in [*((q, False) for q in result.fresh), *((q, True) for q in result.stale)]:
            key = redis_keys.quotes(result.token_in, result.token_out, VENUE_KEYS[quote.dex])
            hashes.append((key, quote_fields(quote, stale=stale)))
        if not result.fresh:
            continue
        best = choose_best(result.fresh).best  # BEST is what the router would pick
        hashes.append((redis_keys.quotes(result.token_in, result.token_out, "BEST"), quote_fields(best)))
        pair = f"{result.token_in}-{result.token_out}"
        ticks.append({"pair": pair, "price": str(best.price), "dex": best.dex.value, "ts": repr(best.ts)})
    return hashes, ticks


def round_script_call(rounds: list[PairRound]) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of `_PUBLISH_ROUND` for one round (`round_writes`)."""
    hashes, ticks = round_writes(rounds)
    argv: list[str | int] = [redis_keys.TICKS_MAXLEN]
    for _key, fields in hashes:
        argv.append(2 * len(fields))
        argv.extend(item for pair in fields.items() for item in pair)
    for tick in ticks:
        argv.extend((tick["pair"], tick["price"], tick["dex"], tick["ts"]))
    return [*(key for key, _ in hashes), redis_keys.TICKS_STREAM], argv


class QuoteCache:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._publish_round = redis.register_script(_PUBLISH_ROUND)

    async def publish(self, rounds: list[PairRound]) -> None:
        if isinstance(self.redis, ClusterRedis):
            await self._publish_per_key(rounds)
        else:
            keys, argv = round_script_call(rounds)
            await self._publish_round(keys=keys, args=argv)

    async def _publish_per_key(self, rounds: list[PairRound]) -> None:
        """The round as one pipeline of a write per key: on a cluster the contract's quote keys (untagged,
        `quotes:<pair>:<venue>`) are in slots of their own, so no script may write two. Each hash is still
        written whole; a reader may see one hash from this round and the next from the last."""
        hashes, ticks = round_writes(rounds)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, fields in hashes:
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py: invariant dict types
            for tick in ticks:
                pipe.xadd(redis_keys.TICKS_STREAM, tick, maxlen=redis_keys.TICKS_MAXLEN, approximate=True)  # type: ignore[arg-type]  # the same
            await pipe.execute()


class QuotePoller:
    """One polling round = every pair quoted by every venue at once, then one cache write.

    Each venue gets one request for all pairs per round: one simulated round trip instead of one per pair,
    which is what a poller of real pools does (one RPC for many accounts) and what keeps an idle engine's
    event loop from waking once per pair and venue."""

    def __init__(
        self, venues: list[Venue], cache: QuoteCache, pairs: list[tuple[str, str]], reference_usd: Decimal
    ) -> None:
        self.venues = venues
        self.cache = cache
        self.pairs = pairs
        self.reference_usd = reference_usd
        self.last_good: dict[tuple[str, str, Dex], Quote] = {}

    async def _ask(self, venue: Venue, requests: list[QuoteRequest]) -> list[Quote | VenueUnavailable]:
        try:
            return await venue.quote_many(requests)
        except VenueUnavailable as exc:
            return [exc] * len(requests)

    async def poll_once(self) -> list[PairRound]:
        """One request per venue for every pair (not one per pair), all venues at once, then one write."""
        requests = [QuoteRequest(a, b, reference_amount(a, self.reference_usd)) for a, b in self.pairs]
        answers = await asyncio.gather(*(self._ask(venue, requests) for venue in self.venues))
        rounds = []
        for index, request in enumerate(requests):
            fresh, stale = [], []
            for venue, answer in zip(self.venues, (per_venue[index] for per_venue in answers), strict=True):
                key = (request.token_in, request.token_out, venue.dex)
                if isinstance(answer, Quote):
                    fresh.append(answer)
                    self.last_good[key] = answer
                elif (previous := self.last_good.get(key)) is not None:
                    stale.append(previous)
            rounds.append(PairRound(request.token_in, request.token_out, fresh, stale))
        await self.cache.publish(rounds)
        return rounds


class NotStreamed(LookupError):
    """Neither direction of the pair is streamed: no pool state of it is ever cached."""


async def cached_pools(
    redis: Redis, token_in: str, token_out: str, streamed: Collection[tuple[str, str]]
) -> list[CachedPool]:
    """Each venue's last fresh pool state for token_in → token_out, read in one round trip; a pair streamed
    only the other way is read from that side and reversed (the same reserves, traded back)."""
    if (token_in, token_out) in streamed:
        side, flip = (token_in, token_out), False
    elif (token_out, token_in) in streamed:
        side, flip = (token_out, token_in), True
    else:
        raise NotStreamed(f"{token_in}-{token_out}")
    async with redis.pipeline(transaction=False) as pipe:
        for venue_key in VENUE_KEYS.values():
            pipe.hgetall(redis_keys.quotes(*side, venue_key))
        hashes = await pipe.execute()
    pools = []
    for dex, fields in zip(VENUE_KEYS, hashes, strict=True):
        state = fields.get(b"pool")
        if state is None or fields.get(b"stale") == b"1":
            continue  # never priced here yet, or the venue missed its last round: quote without it
        pool = pool_from_json(state)
        pools.append(CachedPool(dex, pool.reversed() if flip else pool, float(fields[b"ts"])))
    return pools
