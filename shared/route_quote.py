"""A quote as `GET /api/quote` gives it (Jupiter's shape): the best route for an exact-in amount over the
venues' cached pool states, what it pays at least under the slippage allowed, and its price impact.

Pure: the caller reads the pool states (shared/quote_cache.py) and passes the clock's epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal

from shared.domain.events import iso_utc
from shared.domain.tokens import TOKENS
from shared.route_split import Route, best_route
from shared.venues.base import Curve, Dex
from shared.venues.price_walk import significant
from shared.venues.slots import slot_at

#: How long a quote holds after the pool states it was priced on: an order routed on an older one is
#: re-quoted before its transaction is sent.
QUOTE_VALID_S = 2.0
#: Significant digits of `priceImpactPct`.
IMPACT_DIGITS = 6


@dataclass(frozen=True, slots=True)
class CachedPool:
    """One venue's pool for tokenIn → tokenOut as the quote stream last cached it, and when (epoch s)."""

    dex: Dex
    pool: Curve
    ts: float


def quote_message(
    token_in: str, token_out: str, amount: Decimal, slippage_bps: int, pools: Sequence[CachedPool], epoch: float
) -> dict[str, object]:
    """The contract's quote for selling `amount` of token_in into token_out over `pools` (at least one)."""
    if not pools:
        raise ValueError("no pool to quote on")
    out_unit = TOKENS[token_out].unit
    curves = {cached.dex: cached.pool for cached in pools}
    route = best_route(curves, amount, in_unit=TOKENS[token_in].unit, out_unit=out_unit)
    used = {leg.venue for leg in route.legs}
    quoted_at = min(cached.ts for cached in pools if cached.dex in used)
    threshold = (route.amount_out * (1 - Decimal(slippage_bps) / 10_000)).quantize(out_unit, rounding=ROUND_DOWN)
    return {
        "tokenIn": token_in,
        "tokenOut": token_out,
        "inAmount": str(amount),
        "outAmount": str(route.amount_out),
        "otherAmountThreshold": str(threshold),
        "slippageBps": slippage_bps,
        "priceImpactPct": str(price_impact_pct(route, amount, max(pool.best_rate for pool in curves.values()))),
        "routePlan": route_plan(route, curves),
        "contextSlot": slot_at(quoted_at, epoch),
        "quotedAt": iso_utc(datetime.fromtimestamp(quoted_at, UTC)),
        "expiresAt": iso_utc(datetime.fromtimestamp(quoted_at + QUOTE_VALID_S, UTC)),
    }


def price_impact_pct(route: Route[Dex], amount: Decimal, best_rate: Decimal) -> Decimal:
    """How much less than an infinitesimal amount's rate (the best venue's, fee paid) the route pays, in %."""
    at_mid = amount * best_rate
    impact = max(Decimal(0), (1 - route.amount_out / at_mid) * 100) if at_mid else Decimal(0)
    return significant(impact, IMPACT_DIGITS).normalize() if impact else Decimal(0)


def route_plan(route: Route[Dex], curves: dict[Dex, Curve]) -> list[dict[str, object]]:
    """The legs as the contract lists them: each venue's share of the amount in whole percent (largest
    remainders, so they add up to 100), its exact amounts, and its fee (a fraction, as the quotes hashes give
    it)."""
    total = route.amount_in
    exact = [leg.amount_in * 100 / total for leg in route.legs]
    percents = [int(share) for share in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - percents[i], reverse=True)
    for i in by_remainder[: 100 - sum(percents)]:
        percents[i] += 1
    return [
        {
            "dex": leg.venue.value,
            "percent": percent,
            "inAmount": str(leg.amount_in),
            "outAmount": str(leg.amount_out),
            "fee": str(curves[leg.venue].fee),
        }
        for leg, percent in zip(route.legs, percents, strict=True)
    ]
