"""The split router (shared/route_split.py): the most output for an exact-in swap across venues, provably."""

from decimal import ROUND_DOWN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.route_split import MIN_LEG_SHARE, MIN_SPLIT_GAIN, best_route, optimal_split
from shared.venues.meteora import dlmm_pool
from shared.venues.raydium import cpmm_pool

IN_UNIT, OUT_UNIT = Decimal("1e-9"), Decimal("1e-6")  # SOL in, USDC out

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000"), places=4)
offsets_bps = st.integers(min_value=-8, max_value=8)
depths = st.decimals(min_value=Decimal(100_000), max_value=Decimal(50_000_000), places=0)
meteora_fees = st.decimals(min_value=Decimal("0.002"), max_value=Decimal("0.02"), places=4)
#: The amount as a share of one side's depth, in token terms: from dust to a tenth of the pool.
shares = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("0.1"), places=6)


def market(price: Decimal, raydium_bps: int, meteora_bps: int, depth: Decimal, meteora_fee: Decimal):
    """Both venues' pools for selling a token worth `price` USD into USDC, each mid off by a few bps."""
    raydium = cpmm_pool(price * (1 + Decimal(raydium_bps) / 10_000), depth, out_usd_price=Decimal(1))
    meteora = dlmm_pool(
        price * (1 + Decimal(meteora_bps) / 10_000), depth, price, Decimal(1), fee=meteora_fee
    )  # fmt: skip
    return {"raydium": raydium, "meteora": meteora}


def total_out(curves, split) -> Decimal:
    return sum((curves[venue].amount_out(amount) for venue, amount in split.items()), Decimal(0))


def grid_best(curves, amount: Decimal, points: int = 200) -> Decimal:
    """The best two-venue split on a grid, refined once around the best coarse point."""
    first, second = curves.values()

    def out(x: Decimal) -> Decimal:
        return first.amount_out(x) + second.amount_out(amount - x)

    coarse = max(range(points + 1), key=lambda i: out(amount * i / points))
    low = amount * max(coarse - 1, 0) / points
    width = amount * 2 / points
    fine = [min(low + width * j / points, amount) for j in range(points + 1)]
    return max(out(x) for x in fine)


@settings(max_examples=60, deadline=None)
@given(prices, offsets_bps, offsets_bps, depths, meteora_fees, shares)
def test_the_split_adds_up_and_no_grid_split_beats_it(price, r_bps, m_bps, depth, fee, share):
    curves = market(price, r_bps, m_bps, depth, fee)
    amount = (depth / price * share).quantize(IN_UNIT)
    split = optimal_split(curves, amount)
    assert sum(split.values()) == amount and all(leg >= 0 for leg in split.values())
    best = total_out(curves, split)
    grid = grid_best(curves, amount)
    assert best >= grid * (1 - Decimal("1e-12"))
    assert best <= grid * (1 + Decimal("1e-6"))  # and the grid, fine enough, finds it


@settings(max_examples=60, deadline=None)
@given(prices, offsets_bps, offsets_bps, depths, meteora_fees, shares)
def test_the_route_pays_at_least_every_single_venue(price, r_bps, m_bps, depth, fee, share):
    curves = market(price, r_bps, m_bps, depth, fee)
    amount = (depth / price * share).quantize(IN_UNIT)
    route = best_route(curves, amount, in_unit=IN_UNIT, out_unit=OUT_UNIT)
    assert route.amount_in == amount
    for venue, curve in curves.items():
        assert route.amount_out >= curve.amount_out(amount).quantize(OUT_UNIT, rounding=ROUND_DOWN), venue
    assert all(leg.amount_in >= amount * MIN_LEG_SHARE for leg in route.legs) or len(route.legs) == 1
    assert all(leg.amount_in == leg.amount_in.quantize(IN_UNIT) for leg in route.legs)
    best_single = max(curve.amount_out(amount).quantize(OUT_UNIT, rounding=ROUND_DOWN) for curve in curves.values())
    assert len(route.legs) == 1 or route.amount_out > best_single * (1 + MIN_SPLIT_GAIN)


@settings(max_examples=60, deadline=None)
@given(prices, offsets_bps, offsets_bps, depths, meteora_fees)
def test_a_small_amount_goes_to_the_best_single_venue(price, r_bps, m_bps, depth, fee):
    curves = market(price, r_bps, m_bps, depth, fee)
    amount = (depth / price / 10_000_000).quantize(IN_UNIT) or IN_UNIT  # ~$2-5 of a pool holding millions
    route = best_route(curves, amount, in_unit=IN_UNIT, out_unit=OUT_UNIT)
    singles = [
        best_route({venue: curve}, amount, in_unit=IN_UNIT, out_unit=OUT_UNIT) for venue, curve in curves.items()
    ]
    assert len(route.legs) == 1
    assert route.amount_out == max(single.amount_out for single in singles)


def test_a_large_order_splits_and_beats_both_venues_on_a_known_market():
    curves = market(Decimal(150), 1, -1, Decimal(20_000_000), Decimal("0.002"))
    route = best_route(curves, Decimal(1000), in_unit=IN_UNIT, out_unit=OUT_UNIT)
    assert {leg.venue for leg in route.legs} == {"raydium", "meteora"}
    singles = {venue: curve.amount_out(Decimal(1000)) for venue, curve in curves.items()}
    assert route.amount_out > max(singles.values())


def test_a_venue_added_later_needs_nothing_of_the_router():
    """A third pool kind (here a constant-product pool with another fee) is split against on a 2-D grid."""
    curves = market(Decimal(150), 2, -1, Decimal(20_000_000), Decimal("0.004"))
    curves["orca"] = cpmm_pool(Decimal("149.97"), Decimal(8_000_000), Decimal(1), fee=Decimal("0.003"))
    amount = Decimal(800)
    split = optimal_split(curves, amount)
    assert sum(split.values()) == amount and all(leg > 0 for leg in split.values())
    ray, met, orca = curves.values()
    steps = 40
    grid = max(
        ray.amount_out(amount * i / steps)
        + met.amount_out(amount * j / steps)
        + orca.amount_out(amount * (steps - i - j) / steps)
        for i in range(steps + 1)
        for j in range(steps + 1 - i)
    )
    assert total_out(curves, split) >= grid


def test_an_amount_past_every_bin_puts_what_the_bins_cannot_take_somewhere_and_still_adds_up():
    meteora = dlmm_pool(Decimal(150), Decimal(1_000_000), Decimal(150), Decimal(1))
    capacity = meteora.input_above_rate(meteora.best_rate / 10)
    split = optimal_split({"meteora": meteora}, capacity * 2)
    assert split == {"meteora": capacity * 2}
    assert meteora.amount_out(capacity * 2) == meteora.amount_out(capacity)


@pytest.mark.parametrize(
    "pool",
    [
        cpmm_pool(Decimal(150), Decimal(20_000_000), Decimal(1)),
        cpmm_pool(Decimal("0.00002"), Decimal(2_000_000), Decimal(1)).reversed(),
        dlmm_pool(Decimal(150), Decimal(20_000_000), Decimal(150), Decimal(1), fee=Decimal("0.0031")),
        dlmm_pool(Decimal("0.00002"), Decimal(2_000_000), Decimal("0.00002"), Decimal(1)).reversed(),
    ],
    ids=["cpmm", "cpmm-reversed", "dlmm", "dlmm-reversed"],
)
@pytest.mark.parametrize("fraction", ["0.9999", "0.999", "0.99", "0.9", "0.75"])
def test_a_pool_takes_input_exactly_while_the_next_unit_pays_more_than_the_rate(pool, fraction):
    rate = pool.best_rate * Decimal(fraction)
    taken = pool.input_above_rate(rate)
    step = taken * Decimal("1e-9") + Decimal("1e-18")
    before = (pool.amount_out(taken) - pool.amount_out(taken - step)) / step
    after = (pool.amount_out(taken + step) - pool.amount_out(taken)) / step
    assert before >= rate * (1 - Decimal("1e-6")) and after <= rate * (1 + Decimal("1e-6"))
    assert pool.input_above_rate(pool.best_rate) == 0
