"""The simulated market at one instant: both venues' pools for a pair and what they quote, pure.

Every pool is rebuilt from the seeded walk at the requested time, as if arbitrageurs had just re-centred it,
so any process can price any moment without shared state. The venues differ in three ways, which is what
makes routing worth doing:

* each venue's mid strays from the fair price by a bounded offset (at most OFFSET_MAX) from its own walk;
* Raydium is a deep constant-product pool with a 0.25 % fee;
* Meteora concentrates a fraction of that depth in bins with a 0.20 % base fee plus a volatility fee.

So small trades usually go to Meteora unless its offset or volatility fee is unlucky, and large trades go to
Raydium, whose depth keeps impact low after Meteora's bins run thin.

A pair's pool is built once in a canonical direction (symbols sorted) and reversed for the other one, so
SOL→USDC and USDC→SOL trade against the same reserves.
"""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

from shared.domain.tokens import TOKENS
from shared.venues.base import Dex, NoPool, Quote
from shared.venues.launches import LaunchParams, depth_usd
from shared.venues.meteora import BIN_STEP_BPS, DlmmPool, bins_crossed, dlmm_fee, dlmm_pool
from shared.venues.price_walk import log_walk, reference_price, significant
from shared.venues.raydium import CpmmPool, cpmm_pool

#: Largest distance between a venue's mid and the fair price (8 bps).
OFFSET_MAX = Decimal("0.0008")
#: The offset is the walk's move over this lag: stationary, so it wanders around zero instead of drifting.
OFFSET_LAG_S = 600.0
#: Meteora's volatility accumulator counts bins crossed over this window.
VOLATILITY_WINDOW_S = 3600.0
IMPACT_DIGITS = 8

Pool = CpmmPool | DlmmPool


class MarketParams(LaunchParams, Protocol):
    """What the market needs from a simulation config (`simulated.SimConfig` satisfies it): the seed,
    epoch and volatility of prices, and the launch schedule's timing."""


def canonical_pair(token_in: str, token_out: str) -> tuple[str, str]:
    """The pair's (base, quote) whatever the trade's direction."""
    for symbol in (token_in, token_out):
        if symbol not in TOKENS:
            raise ValueError(f"unknown token {symbol!r}")
    if token_in == token_out:
        raise ValueError("a swap needs two different tokens")
    base, quote = sorted((token_in, token_out))
    return base, quote


def venue_offset(seed: str, dex: Dex, base: str, quote: str, t: float) -> Decimal:
    """How far (as a fraction) this venue's mid sits from the fair price of base in quote at t."""
    key = f"offset:{dex.value}:{base}-{quote}"
    # Float is fine here: it is unit-variance noise, bounded by tanh before it touches a price.
    z = (log_walk(seed, key, t) - log_walk(seed, key, t - OFFSET_LAG_S)) / math.sqrt(OFFSET_LAG_S)
    return significant(OFFSET_MAX * Decimal(math.tanh(z)))


def _usd_prices(base: str, quote: str, t: float, sim: MarketParams) -> tuple[Decimal, Decimal]:
    return (
        reference_price(sim.seed, base, t, sim.epoch, sim.daily_vol),
        reference_price(sim.seed, quote, t, sim.epoch, sim.daily_vol),
    )


def _venue_mid(
    dex: Dex, base: str, quote: str, prices: tuple[Decimal, Decimal], t: float, sim: MarketParams
) -> Decimal:
    fair = prices[0] / prices[1]
    return significant(fair * (1 + venue_offset(sim.seed, dex, base, quote, t)))


def meteora_fee(base: str, quote: str, t: float, sim: MarketParams) -> Decimal:
    """Base plus variable fee, from how many bins the fair price crossed over the last window."""
    now = _usd_prices(base, quote, t, sim)
    before = _usd_prices(base, quote, t - VOLATILITY_WINDOW_S, sim)
    crossed = bins_crossed(before[0] / before[1], now[0] / now[1], BIN_STEP_BPS)
    return dlmm_fee(crossed, BIN_STEP_BPS)


def pool_at(
    dex: Dex, token_in: str, token_out: str, t: float, sim: MarketParams, log_shift: Decimal = Decimal(0)
) -> Pool:
    """The venue's pool for selling token_in into token_out at time t, its mid moved by `log_shift` (the
    canonical direction's ln(mid / undisturbed mid): what swaps left of their push, pool_shift.py)."""
    dex = Dex(dex)
    base, quote = canonical_pair(token_in, token_out)
    depth = depth_usd(dex, base, quote, t, sim)
    if depth is None:
        raise NoPool(f"{dex.value} has no {base}-{quote} pool")
    prices = _usd_prices(base, quote, t, sim)
    mid = _venue_mid(dex, base, quote, prices, t, sim)
    if log_shift:
        mid = significant(mid * (1 + Decimal(math.expm1(float(log_shift)))))  # 16 digits, for prices kept to 10
    pool: Pool
    if dex is Dex.RAYDIUM:
        pool = cpmm_pool(mid, depth, out_usd_price=prices[1])
    else:
        fee = meteora_fee(base, quote, t, sim)
        pool = dlmm_pool(mid, depth, in_usd_price=prices[0], out_usd_price=prices[1], fee=fee)
    return pool if token_in == base else pool.reversed()


def quote_at(
    dex: Dex,
    token_in: str,
    token_out: str,
    amount_in: Decimal,
    t: float,
    sim: MarketParams,
    log_shift: Decimal = Decimal(0),
) -> Quote:
    """What `amount_in` of token_in buys on `dex` at time t; outputs round down to token_out's decimals."""
    if amount_in <= 0:
        raise ValueError("amount_in must be positive")
    dex = Dex(dex)
    pool = pool_at(dex, token_in, token_out, t, sim, log_shift)
    units = TOKENS[token_out].unit
    amount_out = pool.amount_out(amount_in).quantize(units, rounding=ROUND_DOWN)
    return Quote(
        dex=dex,
        token_in=token_in,
        token_out=token_out,
        amount_in=amount_in,
        amount_out=amount_out,
        fee=pool.fee,
        price=significant(amount_out / amount_in),
        mid_price=significant(pool.mid_price),
        price_impact=significant(pool.price_impact(amount_in), IMPACT_DIGITS),
        liquidity=pool.liquidity.quantize(units, rounding=ROUND_DOWN),
        ts=t,
        pool=pool,
    )
