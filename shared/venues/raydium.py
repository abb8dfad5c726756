"""Raydium-like constant-product pool maths (x·y = k), pure.

The fee is taken from the input before it meets the curve, as Raydium's AMM v4 / CPMM do; the retained fee
stays in the pool, which is why k never decreases.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

RAYDIUM_FEE = Decimal("0.0025")

#: USD on each side of a typical pool holding the token; a pair is as deep as its shallower token.
TOKEN_DEPTH_USD: dict[str, Decimal] = {
    "SOL": Decimal(20_000_000),
    "USDC": Decimal(30_000_000),
    "USDT": Decimal(15_000_000),
    "JUP": Decimal(3_000_000),
    "BONK": Decimal(2_000_000),
}
#: A token nobody listed gets a thin pool rather than an error: quoting it stays possible, just costly.
DEFAULT_TOKEN_DEPTH_USD = Decimal(1_000_000)


def pair_depth_usd(token_a: str, token_b: str) -> Decimal:
    """USD per side of the pair's pool (direction does not matter)."""
    return min(TOKEN_DEPTH_USD.get(s, DEFAULT_TOKEN_DEPTH_USD) for s in (token_a, token_b))


@dataclass(frozen=True, slots=True)
class CpmmPool:
    """One direction of a pool: token_in is sold into `reserve_in`, token_out is paid from `reserve_out`."""

    reserve_in: Decimal
    reserve_out: Decimal
    fee: Decimal = RAYDIUM_FEE

    def __post_init__(self) -> None:
        if self.reserve_in <= 0 or self.reserve_out <= 0:
            raise ValueError("a pool needs positive reserves")
        if not 0 <= self.fee < 1:
            raise ValueError("fee must be a fraction in [0, 1)")

    @property
    def k(self) -> Decimal:
        return self.reserve_in * self.reserve_out

    @property
    def mid_price(self) -> Decimal:
        """tokenOut per tokenIn for an infinitesimal trade, before the fee."""
        return self.reserve_out / self.reserve_in

    @property
    def liquidity(self) -> Decimal:
        """What the pool could ever pay out, in tokenOut."""
        return self.reserve_out

    def amount_out(self, amount_in: Decimal) -> Decimal:
        if amount_in < 0:
            raise ValueError("amount_in must not be negative")
        net_in = amount_in * (1 - self.fee)
        return self.reserve_out * net_in / (self.reserve_in + net_in)

    def price_impact(self, amount_in: Decimal) -> Decimal:
        """How much worse than mid the fee-less part of the input trades; the fee is reported separately."""
        net_in = amount_in * (1 - self.fee)
        return net_in / (self.reserve_in + net_in)

    @property
    def best_rate(self) -> Decimal:
        """tokenOut per tokenIn, fee paid, of the first infinitesimal unit: the curve's steepest point."""
        return self.mid_price * (1 - self.fee)

    def input_above_rate(self, rate: Decimal) -> Decimal:
        """How much tokenIn (fee included) the pool takes while each next unit still pays more than `rate`.

        The marginal output R_out·R_in·γ / (R_in + γx)² (γ = 1 − fee) falls to `rate` at
        x = (√(R_out·R_in·γ / rate) − R_in) / γ."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        kept = 1 - self.fee
        return max(Decimal(0), ((self.reserve_out * self.reserve_in * kept / rate).sqrt() - self.reserve_in) / kept)

    def after_swap(self, amount_in: Decimal) -> CpmmPool:
        """The pool once `amount_in` has been sold into it (the whole input, fee included, stays)."""
        out = self.amount_out(amount_in)
        return CpmmPool(self.reserve_in + amount_in, self.reserve_out - out, self.fee)

    def mid_after(self, amount_in: Decimal) -> Decimal:
        """The mid price once `amount_in` has been sold into the pool."""
        return self.after_swap(amount_in).mid_price

    def reversed(self) -> CpmmPool:
        """The same pool traded the other way."""
        return CpmmPool(self.reserve_out, self.reserve_in, self.fee)


def cpmm_pool(mid_price: Decimal, depth_usd: Decimal, out_usd_price: Decimal, fee: Decimal = RAYDIUM_FEE) -> CpmmPool:
    """A pool priced at `mid_price` (tokenOut per tokenIn) holding `depth_usd` of tokenOut."""
    reserve_out = depth_usd / out_usd_price
    return CpmmPool(reserve_in=reserve_out / mid_price, reserve_out=reserve_out, fee=fee)
