from decimal import Decimal

import pytest

from shared.venues.meteora import (
    BASE_FEE,
    MAX_FEE,
    DlmmPool,
    bins_crossed,
    dlmm_fee,
    dlmm_pool,
)
from shared.venues.raydium import RAYDIUM_FEE, CpmmPool, cpmm_pool, pair_depth_usd

D = Decimal
SIZES = [D(1), D(10), D(100), D(1_000), D(10_000), D(100_000)]


# --- Raydium: constant product -------------------------------------------------------------------------


def test_cpmm_known_example():
    pool = CpmmPool(reserve_in=D(1000), reserve_out=D(1000), fee=D("0.0025"))
    # 100 in, 99.75 after the fee: 1000 · 99.75 / (1000 + 99.75)
    assert pool.amount_out(D(100)) == D(1000) * D("99.75") / D("1099.75")
    assert round(pool.amount_out(D(100)), 6) == D("90.702432")
    assert CpmmPool(D(1000), D(1000), D(0)).amount_out(D(100)) == D(1000) * 100 / 1100


def test_cpmm_fee_is_a_quarter_percent_of_the_input():
    pool = cpmm_pool(D(150), D(20_000_000), out_usd_price=D(1))
    assert pool.fee == RAYDIUM_FEE == D("0.0025")
    tiny = D("0.001")
    # What is left beyond the fee is the impact of a $0.15 trade in a $20M pool: about 1e-8.
    assert abs(pool.amount_out(tiny) / (tiny * 150) - (1 - RAYDIUM_FEE)) < D("1e-7")


def test_cpmm_k_never_decreases():
    pool = CpmmPool(D(5000), D(750_000))
    for size in SIZES:
        after = pool.after_swap(size)
        assert after.k >= pool.k
        pool = after


def test_cpmm_impact_grows_with_size():
    pool = cpmm_pool(D(150), D(20_000_000), out_usd_price=D(1))
    impacts = [pool.price_impact(s) for s in SIZES]
    prices = [pool.amount_out(s) / s for s in SIZES]
    assert impacts == sorted(impacts) and len(set(impacts)) == len(impacts)
    assert prices == sorted(prices, reverse=True)


def test_cpmm_pool_is_built_at_its_mid_and_depth():
    pool = cpmm_pool(D(150), D(20_000_000), out_usd_price=D(1))
    assert pool.mid_price == D(150)
    assert pool.liquidity == D(20_000_000)
    assert abs(pool.reversed().mid_price * pool.mid_price - 1) < D("1e-25")


def test_cpmm_rejects_empty_reserves():
    with pytest.raises(ValueError):
        CpmmPool(D(0), D(1))


def test_pair_depth_is_symmetric_and_thinner_for_small_tokens():
    assert pair_depth_usd("SOL", "USDC") == pair_depth_usd("USDC", "SOL") == D(20_000_000)
    assert pair_depth_usd("JUP", "USDC") < pair_depth_usd("SOL", "USDC")
    assert pair_depth_usd("BONK", "SOL") < pair_depth_usd("SOL", "USDC")


# --- Meteora: DLMM bins --------------------------------------------------------------------------------


def sol_usdc_bins(fee: Decimal = BASE_FEE) -> DlmmPool:
    return dlmm_pool(D(150), D(20_000_000), in_usd_price=D(150), out_usd_price=D(1), fee=fee)


def test_dlmm_trade_inside_the_active_bin_has_no_impact():
    pool = sol_usdc_bins()
    assert pool.amount_out(D(1)) == D(150) * (1 - BASE_FEE)
    assert pool.price_impact(D(1)) == 0


def test_dlmm_swap_walks_into_the_next_bin_at_its_price():
    pool = DlmmPool(mid_price=D(100), active_out=D(1000), active_in=D(10), fee=D(0), bin_step_bps=10)
    # The active bin takes 10 in for its 1000 out; the rest trades one bin lower, at 100 / 1.001.
    assert pool.amount_out(D(10)) == D(1000)
    assert pool.amount_out(D(12)) == D(1000) + 2 * (D(100) / D("1.001"))
    prices = [price for price, _ in pool.bins()][:3]
    assert prices == [D(100), D(100) / D("1.001"), D(100) / D("1.001") / D("1.001")]


def test_dlmm_impact_grows_with_size_and_output_is_less_than_linear():
    pool = sol_usdc_bins()
    impacts = [pool.price_impact(s) for s in SIZES]
    assert impacts == sorted(impacts)
    assert impacts[-1] > impacts[2] > 0
    for size in (D(100), D(1000)):
        assert pool.amount_out(2 * size) < 2 * pool.amount_out(size)


def test_dlmm_liquidity_is_the_sum_of_its_bins_and_caps_the_output():
    pool = sol_usdc_bins()
    assert abs(pool.liquidity - sum(liq for _, liq in pool.bins())) < D("1e-12") * pool.liquidity
    assert abs(pool.amount_out(D(10_000_000)) - pool.liquidity) < D("1e-12") * pool.liquidity


def test_dlmm_reversed_pool_trades_the_other_side_at_the_inverse_mid():
    pool = sol_usdc_bins()
    back = pool.reversed()
    assert back.mid_price == 1 / pool.mid_price
    assert back.active_out == pool.active_in
    assert back.reversed().mid_price == pool.mid_price


def test_dlmm_fee_rises_with_volatility_and_is_capped():
    fees = [dlmm_fee(v) for v in range(0, 60, 5)]
    assert fees[0] == BASE_FEE == D("0.0020")
    assert fees == sorted(fees) and fees[1] > fees[0]
    assert dlmm_fee(10) == BASE_FEE + 10 * (10 * D("0.001")) ** 2
    assert max(fees) == MAX_FEE == D("0.02")


def test_bins_crossed_counts_whole_steps_either_way():
    assert bins_crossed(D(100), D(100)) == 0
    assert bins_crossed(D(100), D(101)) == 9  # ln 1.01 / ln 1.001 = 9.95
    assert bins_crossed(D(101), D(100)) == 9
    assert bins_crossed(D(100), D("100.1")) == 1 or bins_crossed(D(100), D("100.1")) == 0
