"""Pools that move: the displacement a swap leaves and arbitrage's decay of it, and swaps priced on it."""

from dataclasses import replace
from decimal import Decimal

import pytest

from shared.venues.base import Dex, SwapLeg
from shared.venues.ledger import PoolId, TxRecord
from shared.venues.market import pool_at
from shared.venues.meteora import DlmmPool
from shared.venues.pool_shift import UNMOVED, PoolShift
from shared.venues.raydium import CpmmPool
from shared.venues.simulated import SimConfig, execute

D = Decimal
SIM = SimConfig(seed="pool-shift-tests", epoch=1_700_000_000.0, arbitrage_half_life_s=10.0)
AT = SIM.epoch + 3_600.0


def test_arbitrage_halves_the_displacement_every_half_life():
    shift = PoolShift(D("-0.02"), AT)
    assert shift.at_time(AT, 10) == D("-0.02")
    assert shift.at_time(AT + 10, 10) == D("-0.01")
    assert shift.at_time(AT + 30, 10) == D("-0.0025")
    assert shift.at_time(AT - 5, 10) == D("-0.02")  # a swap landing before the last move sees it whole
    assert shift.at_time(AT + 10_000, 10) == 0  # negligible: gone
    assert shift.at_time(AT + 1, 0) == 0 and UNMOVED.at_time(AT, 10) == 0  # half-life 0: pools never move


def test_a_swap_adds_its_push_in_the_canonical_direction():
    selling_base = UNMOVED.moved(AT, 10, mid_before=D(150), mid_after=D(147), selling_base=True)
    assert selling_base.log_mid == pytest.approx((D(147) / D(150)).ln(), rel=D("1e-15")) and selling_base.at == AT
    # Selling the quote token lowers the reversed mid (base per quote), so the canonical mid rises.
    selling_quote = selling_base.moved(AT + 10, 10, mid_before=D(1) / 147, mid_after=D(1) / 149, selling_base=False)
    assert selling_quote.log_mid == pytest.approx(selling_base.log_mid / 2 + (D(149) / D(147)).ln(), abs=D("1e-17"))


def test_the_text_form_round_trips():
    shift = PoolShift(D("-0.0123456789012345678"), 1_700_003_600.123)
    assert PoolShift.from_text(shift.to_text()) == shift
    assert PoolShift.from_text(shift.to_text().encode()) == shift
    assert PoolShift.from_text(None) is UNMOVED


def test_a_constant_product_moves_to_its_new_reserve_ratio():
    pool = CpmmPool(D(1_000), D(150_000))
    assert pool.mid_after(D(10)) == pool.after_swap(D(10)).mid_price < pool.mid_price


def test_bins_move_only_once_the_active_bin_is_crossed():
    pool = DlmmPool(mid_price=D(150), active_out=D(1_500), active_in=D(10))
    assert pool.mid_after(D(1)) == pool.mid_price  # inside the active bin
    after = pool.mid_after(D(50))
    assert after < pool.mid_price
    assert any(price == after for price, _ in pool.bins())  # the price of the bin it stopped in


def record(legs, token_in="SOL", token_out="USDC", lands_at=AT):
    return TxRecord(
        tx_hash="tx", order_id="order", attempt=1, legs=tuple(legs), token_in=token_in, token_out=token_out,
        min_amount_out=D(0), submitted_at=lands_at - 2, lands_at=lands_at,
    )  # fmt: skip


@pytest.mark.parametrize("dex", list(Dex))
def test_a_swap_priced_on_its_own_push_pays_less_and_a_swap_back_undoes_it(dex):
    pool_id = PoolId.of(dex, "SOL", "USDC")
    sell = record([SwapLeg(dex, D(2_000))])
    first, moves = execute(sell, SIM)
    ((moved_pool, before, after),) = moves
    assert (moved_pool, before) == (pool_id, UNMOVED) and after.log_mid < 0

    second, _ = execute(sell, SIM, {pool_id: after})
    assert second.amount_out < first.amount_out  # the pool remembers the first sale
    assert (
        pool_at(dex, "SOL", "USDC", AT, SIM, after.at_time(AT, 10)).mid_price
        < pool_at(dex, "SOL", "USDC", AT, SIM).mid_price
    )

    buy_back = record([SwapLeg(dex, first.amount_out)], token_in="USDC", token_out="SOL")
    _, ((_, _, restored),) = execute(buy_back, SIM, {pool_id: after})
    assert abs(restored.log_mid) < abs(after.log_mid) / 2  # buying back pushes the price back up


def test_a_slipped_swap_moves_no_pool():
    tx = replace(record([SwapLeg(Dex.RAYDIUM, D(10))]), min_amount_out=D(10**9))
    outcome, moves = execute(tx, SIM)
    assert outcome.error == "slippage_exceeded" and moves == []
