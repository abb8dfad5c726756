"""A seeded market that every process can evaluate on its own, at any moment, without shared state.

Prices follow geometric Brownian motion. W(t) is built by the Lévy (Brownian-bridge) construction over dyadic
intervals of a 2^32 s horizon: the value at each interval's midpoint is the mean of its ends plus a normal
deviate drawn by hashing (seed, key, level, index). Evaluating W(t) therefore walks 32 levels down to the
one-second step that contains t, and two processes with the same seed agree on every price they compute.
"""

from __future__ import annotations

import hashlib
import math
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

from shared.domain.tokens import TOKENS

LEVELS = 32
HORIZON_S = 1 << LEVELS
SECONDS_PER_DAY = 86_400
PRICE_DIGITS = 12

_SQRT_DAY = Decimal(SECONDS_PER_DAY).sqrt()
_TWO_64 = float(1 << 64)


def seeded_uniform(seed: str, *parts: object) -> float:
    """A uniform draw in [0, 1) fixed by (seed, parts): reproducible randomness with no generator state."""
    text = "\x1f".join([seed, *map(str, parts)])
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _TWO_64


# The upper levels of the bridge are shared by every t, so caching them turns most calls into a few hashes.
@lru_cache(maxsize=1 << 16)
def _normal(seed: str, key: str, level: int, index: int) -> float:
    text = f"{seed}\x1f{key}\x1f{level}\x1f{index}"
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    # +1 keeps u1 in (0, 1] so the logarithm is finite.
    u1 = (int.from_bytes(digest[:8], "big") + 1) / _TWO_64
    u2 = int.from_bytes(digest[8:], "big") / _TWO_64
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def log_walk(seed: str, key: str, t: float) -> float:
    """Standard Brownian motion W(t), t in seconds (clamped to [0, 2^32]), with W(0) = 0."""
    t = min(max(float(t), 0.0), float(HORIZON_S))
    second = min(int(t), HORIZON_S - 1)
    w_lo, w_hi = _one_second_step(seed, key, second)
    return w_lo + (w_hi - w_lo) * (t - second)


# Every t inside one second walks the same 32 levels down to the same step, and one quote evaluates the walk
# ~14 times for a handful of (key, second) pairs (both tokens now, at the epoch and an hour ago, the venue
# offsets): remembering the step's two ends turns all but the first of them into one dictionary lookup.
@lru_cache(maxsize=1 << 14)
def _one_second_step(seed: str, key: str, second: int) -> tuple[float, float]:
    """W at both ends of the one-second step [second, second + 1), by the bridge construction."""
    lo, hi = 0, HORIZON_S
    w_lo, w_hi = 0.0, math.sqrt(HORIZON_S) * _normal(seed, key, 0, 0)
    for level in range(1, LEVELS + 1):
        width = hi - lo
        mid = lo + width // 2
        # A bridge pinned at both ends has variance width/4 at its midpoint.
        w_mid = (w_lo + w_hi) / 2 + math.sqrt(width) / 2 * _normal(seed, key, level, lo // width)
        if second < mid:
            hi, w_hi = mid, w_mid
        else:
            lo, w_lo = mid, w_mid
    return w_lo, w_hi


def significant(value: Decimal, digits: int = PRICE_DIGITS) -> Decimal:
    """Round to `digits` significant digits: prices span 1e-7 (BONK in SOL) to 1e7, so no fixed scale fits."""
    if not value:
        return Decimal(0)
    return value.quantize(Decimal(1).scaleb(value.adjusted() - digits + 1), rounding=ROUND_HALF_EVEN)


# One Meteora quote prices both tokens at t twice (the pool, then its volatility fee): the second is a lookup.
@lru_cache(maxsize=1 << 12)
def reference_price(seed: str, symbol: str, t: float, epoch: float, daily_vol: Decimal) -> Decimal:
    """The token's USD price at t: its registry price at `epoch`, moved by a geometric Brownian motion."""
    token = TOKENS[symbol]
    sigma = daily_vol * token.volatility_factor / _SQRT_DAY
    shock = Decimal(log_walk(seed, symbol, t) - log_walk(seed, symbol, epoch))
    return significant(token.usd_price * (sigma * shock).exp())


def pair_mid_price(seed: str, token_in: str, token_out: str, t: float, epoch: float, daily_vol: Decimal) -> Decimal:
    """The fair price of one token_in in token_out at t."""
    price_in = reference_price(seed, token_in, t, epoch, daily_vol)
    price_out = reference_price(seed, token_out, t, epoch, daily_vol)
    return significant(price_in / price_out)
