import statistics
from decimal import Decimal

from shared.domain.tokens import TOKENS
from shared.venues.price_walk import (
    HORIZON_S,
    log_walk,
    pair_mid_price,
    reference_price,
    seeded_uniform,
    significant,
)

EPOCH = 1_700_000_000.0
VOL = Decimal("0.05")


def test_walk_is_a_pure_function_of_seed_key_and_time():
    assert log_walk("a", "SOL", EPOCH + 12.5) == log_walk("a", "SOL", EPOCH + 12.5)
    assert log_walk("a", "SOL", EPOCH) != log_walk("b", "SOL", EPOCH)
    assert log_walk("a", "SOL", EPOCH) != log_walk("a", "JUP", EPOCH)


def test_walk_starts_at_zero_and_clamps_to_its_horizon():
    assert log_walk("a", "k", 0) == 0.0
    assert log_walk("a", "k", -50) == 0.0
    assert log_walk("a", "k", HORIZON_S + 10) == log_walk("a", "k", HORIZON_S)


def test_walk_interpolates_linearly_inside_a_one_second_step():
    start, end = log_walk("a", "k", EPOCH), log_walk("a", "k", EPOCH + 1)
    assert abs(log_walk("a", "k", EPOCH + 0.25) - (0.75 * start + 0.25 * end)) < 1e-6


def test_increments_have_the_variance_of_brownian_motion():
    for lag in (1.0, 3600.0):
        steps = [log_walk("v", f"k{i}", EPOCH + lag) - log_walk("v", f"k{i}", EPOCH) for i in range(3000)]
        assert abs(statistics.pvariance(steps) / lag - 1) < 0.1
        assert abs(statistics.mean(steps)) < 4 * (lag / 3000) ** 0.5


def test_successive_increments_are_uncorrelated():
    pairs = []
    for i in range(3000):
        w0, w1, w2 = (log_walk("c", f"k{i}", EPOCH + 60 * n) for n in range(3))
        pairs.append((w1 - w0, w2 - w1))
    first, second = zip(*pairs, strict=True)
    assert abs(statistics.correlation(first, second)) < 0.06


def test_reference_price_starts_at_the_registry_price_and_stays_positive():
    for symbol, token in TOKENS.items():
        assert reference_price("s", symbol, EPOCH, EPOCH, VOL) == token.usd_price
        assert reference_price("s", symbol, EPOCH + 86_400 * 30, EPOCH, VOL) > 0


def test_stablecoins_barely_move_while_sol_does():
    day_later = EPOCH + 86_400
    sol_moves = [abs(reference_price(f"s{i}", "SOL", day_later, EPOCH, VOL) / 150 - 1) for i in range(200)]
    usdc_moves = [abs(reference_price(f"s{i}", "USDC", day_later, EPOCH, VOL) - 1) for i in range(200)]
    assert 0.02 < statistics.mean(sol_moves) < 0.06  # E|N(0, 5 %)| is about 4 %
    assert max(usdc_moves) < Decimal("0.003")


def test_zero_volatility_freezes_prices():
    assert reference_price("s", "SOL", EPOCH + 1e6, EPOCH, Decimal(0)) == Decimal(150)


def test_prices_are_decimals_with_twelve_significant_digits():
    price = reference_price("s", "BONK", EPOCH + 777, EPOCH, VOL)
    assert isinstance(price, Decimal)
    assert len(price.as_tuple().digits) <= 12


def test_pair_mid_is_the_ratio_of_usd_prices():
    t = EPOCH + 5000
    sol = reference_price("s", "SOL", t, EPOCH, VOL)
    usdc = reference_price("s", "USDC", t, EPOCH, VOL)
    assert pair_mid_price("s", "SOL", "USDC", t, EPOCH, VOL) == significant(sol / usdc)
    assert pair_mid_price("s", "SOL", "USDC", EPOCH, EPOCH, VOL) == Decimal(150)


def test_significant_rounds_to_digits_whatever_the_magnitude():
    assert significant(Decimal("123456.7890123456")) == Decimal("123456.789012")
    assert significant(Decimal("0.000000133400000000123")) == Decimal("1.33400000000E-7")
    assert significant(Decimal("0E-16")) == 0


def test_seeded_uniform_is_reproducible_and_in_range():
    draws = [seeded_uniform("s", "quote", i) for i in range(2000)]
    assert draws == [seeded_uniform("s", "quote", i) for i in range(2000)]
    assert all(0 <= d < 1 for d in draws)
    assert 0.45 < statistics.mean(draws) < 0.55
