"""Pools that move: an executed swap pushes its pool's price, and arbitrage pulls it back, pure.

The market (market.py) rebuilds every pool from the seeded walk, as if arbitrageurs had just re-centred it.
A swap knocks its pool off that centre: the pool's mid moves to where the swap left its marginal price (the
constant product's new reserve ratio, or the bin the swap stopped in), and the pool is rebuilt around the moved
mid with its usual depth. Arbitrageurs then trade the gap away: the displacement halves every half-life.

A displacement is kept as ln(mid / undisturbed mid) of the pool's canonical direction (its base sold for its
quote), so swaps in either direction, on top of each other, add up, and decay needs one number and one time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

#: Below this the displacement moves no price by a significant digit (prices keep 10): it is gone.
NEGLIGIBLE = Decimal("1e-12")


@dataclass(frozen=True, slots=True)
class PoolShift:
    #: ln(mid / undisturbed mid) of the canonical direction, as it stood at `at`.
    log_mid: Decimal = Decimal(0)
    #: UTC epoch seconds of the last swap that moved the pool.
    at: float = 0.0

    def at_time(self, t: float, half_life_s: float) -> Decimal:
        """What is left of the displacement at t; a swap that lands before the last move sees it whole."""
        if not self.log_mid or half_life_s <= 0:
            return Decimal(0)
        halvings = max(0.0, t - self.at) / half_life_s
        # A decay factor, not money: float's 16 digits are more than the prices' 10, at a 30th of Decimal's cost.
        left = self.log_mid * Decimal(2.0**-halvings)
        return left if abs(left) >= NEGLIGIBLE else Decimal(0)

    def moved(
        self, t: float, half_life_s: float, mid_before: Decimal, mid_after: Decimal, selling_base: bool
    ) -> PoolShift:
        """The displacement once a swap at t took the trade direction's mid from mid_before to mid_after."""
        push = Decimal(math.log1p(float(mid_after / mid_before - 1)))  # log1p keeps the digits of a tiny push
        return PoolShift(self.at_time(t, half_life_s) + (push if selling_base else -push), t)

    def to_text(self) -> str:
        return f"{self.log_mid} {self.at!r}"

    @classmethod
    def from_text(cls, raw: str | bytes | None) -> PoolShift:
        if not raw:
            return UNMOVED
        log_mid, at = (raw.decode() if isinstance(raw, bytes) else raw).split()
        return cls(Decimal(log_mid), float(at))


UNMOVED = PoolShift()
