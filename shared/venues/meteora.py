"""Meteora-like DLMM maths: liquidity sits in discrete price bins, pure.

Inside one bin a swap executes at that bin's fixed price (no impact); only crossing bins moves the price, so
small trades are cheap and large ones grow expensive fast once they leave the concentrated liquidity. The
grid is anchored on the venue's mid so the active bin trades exactly at mid.

The fee follows DLMM: a base fee plus a variable fee A·(v·s)² where s is the bin step and v the volatility
accumulator, here the number of bins the price crossed over the last window. Volatile markets pay more.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

BIN_STEP_BPS = 10
BASE_FEE = Decimal("0.0020")
#: DLMM's variable fee control A, for fees as fractions: 10 bins crossed at a 10 bps step add 10 bps.
VARIABLE_FEE_CONTROL = Decimal(10)
MAX_FEE = Decimal("0.02")
#: Each bin away from the active one holds this fraction of its neighbour's liquidity.
BIN_DECAY = Decimal("0.985")
#: Bins on each side; at a 10 bps step they span about ±40 % around mid.
BIN_COUNT = 400
#: The active bin holds this share of the pair's USD depth per side (SOL-USDC: $5k of $20M). Against a
#: constant-product pool of depth R, bins of step s cost more impact per dollar once L0 < s·R/2, so this
#: makes Meteora the cheaper venue for small trades and Raydium for large ones.
ACTIVE_BIN_SHARE = Decimal("0.00025")


def _bps(bin_step_bps: int) -> Decimal:
    return Decimal(bin_step_bps) / 10_000


@dataclass(frozen=True, slots=True)
class DlmmPool:
    """One direction of a pool: selling token_in walks down the bins that hold token_out."""

    #: tokenOut per tokenIn at the active bin.
    mid_price: Decimal
    #: tokenOut in the active bin: what a sell of tokenIn consumes first.
    active_out: Decimal
    #: tokenIn in the active bin: what the reversed direction consumes first.
    active_in: Decimal
    fee: Decimal = BASE_FEE
    bin_step_bps: int = BIN_STEP_BPS
    decay: Decimal = BIN_DECAY
    bin_count: int = BIN_COUNT

    def __post_init__(self) -> None:
        if self.mid_price <= 0 or self.active_out <= 0 or self.active_in <= 0:
            raise ValueError("a pool needs a positive price and liquidity")
        if not 0 <= self.fee < 1:
            raise ValueError("fee must be a fraction in [0, 1)")

    def bins(self) -> Iterator[tuple[Decimal, Decimal]]:
        """(price, tokenOut liquidity) of each bin a sell would cross, starting at the active bin."""
        step = 1 + _bps(self.bin_step_bps)
        price, liquidity = self.mid_price, self.active_out
        for _ in range(self.bin_count):
            yield price, liquidity
            price /= step
            liquidity *= self.decay

    @property
    def liquidity(self) -> Decimal:
        """All tokenOut a sell of tokenIn could reach (a geometric series over the bins)."""
        return self.active_out * (1 - self.decay**self.bin_count) / (1 - self.decay)

    def amount_out(self, amount_in: Decimal) -> Decimal:
        """Output for selling `amount_in`; input beyond the last bin finds no liquidity and buys nothing."""
        if amount_in < 0:
            raise ValueError("amount_in must not be negative")
        remaining = amount_in * (1 - self.fee)
        out = Decimal(0)
        for price, liquidity in self.bins():
            capacity = liquidity / price
            if remaining <= capacity:
                return out + remaining * price
            out += liquidity
            remaining -= capacity
        return out

    def price_impact(self, amount_in: Decimal) -> Decimal:
        """How much worse than mid the fee-less part of the input trades; the fee is reported separately."""
        net_in = amount_in * (1 - self.fee)
        if not net_in:
            return Decimal(0)
        # Clamped because inside the active bin the exact answer is 0 and rounding may dip below it.
        return max(Decimal(0), 1 - self.amount_out(amount_in) / net_in / self.mid_price)

    @property
    def best_rate(self) -> Decimal:
        """tokenOut per tokenIn, fee paid, in the active bin: the best any unit of input gets."""
        return self.mid_price * (1 - self.fee)

    def input_above_rate(self, rate: Decimal) -> Decimal:
        """How much tokenIn (fee included) the pool takes while each next unit still pays more than `rate`.

        Bin k pays mid·γ / stepᵏ per unit (γ = 1 − fee) and takes (L₀ / mid)·(decay·step)ᵏ of net input, so
        the bins paying more than `rate` are the first ⌈ln(mid·γ / rate) / ln step⌉, and their capacity is a
        geometric sum: no walk over the bins."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        kept = 1 - self.fee
        step = 1 + _bps(self.bin_step_bps)
        if rate >= self.mid_price * kept:
            return Decimal(0)
        paying = min(
            self.bin_count, int(((self.mid_price * kept / rate).ln() / step.ln()).to_integral_value(ROUND_CEILING))
        )
        ratio = self.decay * step
        first = self.active_out / self.mid_price
        net = first * paying if ratio == 1 else first * (ratio**paying - 1) / (ratio - 1)
        return net / kept

    def mid_after(self, amount_in: Decimal) -> Decimal:
        """The price of the bin a sell of `amount_in` stops in: the pool's active bin afterwards."""
        remaining = amount_in * (1 - self.fee)
        price = self.mid_price
        for price, liquidity in self.bins():
            capacity = liquidity / price
            if remaining < capacity:
                return price
            remaining -= capacity
        return price  # every bin emptied: the price sits at the last one

    def reversed(self) -> DlmmPool:
        """The same pool traded the other way: the active bin's two sides swap roles."""
        return DlmmPool(
            mid_price=1 / self.mid_price,
            active_out=self.active_in,
            active_in=self.active_out,
            fee=self.fee,
            bin_step_bps=self.bin_step_bps,
            decay=self.decay,
            bin_count=self.bin_count,
        )


def bins_crossed(price_before: Decimal, price_now: Decimal, bin_step_bps: int = BIN_STEP_BPS) -> int:
    """How many bins separate two prices: DLMM's volatility accumulator for that window."""
    moved = abs((price_now / price_before).ln())
    return int(moved / (1 + _bps(bin_step_bps)).ln())


def dlmm_fee(
    volatility_accumulator: int,
    bin_step_bps: int = BIN_STEP_BPS,
    base_fee: Decimal = BASE_FEE,
    variable_fee_control: Decimal = VARIABLE_FEE_CONTROL,
    max_fee: Decimal = MAX_FEE,
) -> Decimal:
    variable = variable_fee_control * (volatility_accumulator * _bps(bin_step_bps)) ** 2
    return min(base_fee + variable, max_fee)


def dlmm_pool(
    mid_price: Decimal,
    depth_usd: Decimal,
    in_usd_price: Decimal,
    out_usd_price: Decimal,
    fee: Decimal = BASE_FEE,
    bin_step_bps: int = BIN_STEP_BPS,
) -> DlmmPool:
    """A pool at `mid_price` whose active bin holds ACTIVE_BIN_SHARE of `depth_usd` on each side."""
    active_usd = depth_usd * ACTIVE_BIN_SHARE
    return DlmmPool(
        mid_price=mid_price,
        active_out=active_usd / out_usd_price,
        active_in=active_usd / in_usd_price,
        fee=fee,
        bin_step_bps=bin_step_bps,
    )
