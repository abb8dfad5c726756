from dataclasses import dataclass
from decimal import Decimal
from itertools import permutations

import pytest

from shared.domain.tokens import TOKENS
from shared.venues.base import Dex
from shared.venues.market import OFFSET_MAX, meteora_fee, quote_at, venue_offset
from shared.venues.meteora import BASE_FEE
from shared.venues.raydium import RAYDIUM_FEE

D = Decimal
EPOCH = 1_700_000_000.0


@dataclass(frozen=True)
class Params:
    seed: str = "market-test"
    epoch: float = EPOCH
    daily_vol: Decimal = D("0.05")
    launch_first_s: float = 30.0
    launch_interval_s: float = 90.0
    liquidity_step_s: float = 10.0


SIM = Params()
#: Tokens with pools from the start (launched tokens have their own tests).
LISTED = [symbol for symbol, token in TOKENS.items() if token.listed_at_genesis]
MOMENTS = [EPOCH + 977.3 * i for i in range(150)]


def both(token_in: str, token_out: str, amount: Decimal, t: float, sim: Params = SIM):
    return (
        quote_at(Dex.RAYDIUM, token_in, token_out, amount, t, sim),
        quote_at(Dex.METEORA, token_in, token_out, amount, t, sim),
    )


def test_quotes_are_deterministic_by_seed():
    t = EPOCH + 4321.5
    assert quote_at(Dex.METEORA, "SOL", "USDC", D(3), t, SIM) == quote_at(Dex.METEORA, "SOL", "USDC", D(3), t, SIM)
    other = quote_at(Dex.METEORA, "SOL", "USDC", D(3), t, Params(seed="another"))
    assert other.mid_price != quote_at(Dex.METEORA, "SOL", "USDC", D(3), t, SIM).mid_price


def test_prices_move_over_time():
    mids = {quote_at(Dex.RAYDIUM, "SOL", "USDC", D(1), t, SIM).mid_price for t in MOMENTS[:20]}
    assert len(mids) == 20


def test_venues_differ_in_mid_fee_and_depth():
    raydium, meteora = both("SOL", "USDC", D(10), EPOCH + 100)
    assert raydium.mid_price != meteora.mid_price
    assert raydium.fee == RAYDIUM_FEE and meteora.fee >= BASE_FEE
    assert raydium.liquidity > meteora.liquidity
    assert abs(raydium.mid_price / meteora.mid_price - 1) <= 2 * OFFSET_MAX


def test_venue_offsets_are_bounded_and_wander_both_ways():
    offsets = [venue_offset("s", Dex.RAYDIUM, "SOL", "USDC", t) for t in MOMENTS]
    assert all(abs(o) <= OFFSET_MAX for o in offsets)
    assert min(offsets) < 0 < max(offsets)


def test_each_venue_wins_sometimes_for_small_orders():
    winners = []
    for t in MOMENTS:
        raydium, meteora = both("SOL", "USDC", D(5), t)
        winners.append(Dex.RAYDIUM if raydium.amount_out > meteora.amount_out else Dex.METEORA)
    assert winners.count(Dex.RAYDIUM) >= 10
    assert winners.count(Dex.METEORA) >= 10


def test_raydium_depth_wins_large_orders():
    for t in MOMENTS[:30]:
        raydium, meteora = both("SOL", "USDC", D(1500), t)  # about $225k
        assert raydium.amount_out > meteora.amount_out


def test_impact_grows_with_size_on_both_venues():
    t = EPOCH + 50
    for dex in Dex:
        impacts = [quote_at(dex, "SOL", "USDC", D(size), t, SIM).price_impact for size in (1, 100, 1000, 10_000)]
        assert impacts == sorted(impacts) and impacts[-1] > impacts[0]


def test_reversed_pairs_trade_against_the_same_pool():
    t = EPOCH + 999
    for dex in Dex:
        for token_in, token_out in permutations(LISTED, 2):
            there = quote_at(dex, token_in, token_out, D(1), t, SIM)
            back = quote_at(dex, token_out, token_in, D(1), t, SIM)
            assert abs(there.mid_price * back.mid_price - 1) < D("1e-10")
            assert there.fee == back.fee
            # A round trip pays the fee twice, so it never makes money.
            round_trip = quote_at(dex, token_out, token_in, there.amount_out, t, SIM).amount_out
            assert round_trip < 1


def test_every_pair_quotes_in_token_out_decimals():
    t = EPOCH + 12_345
    for token_in, token_out in permutations(LISTED, 2):
        amount = (D(100) / TOKENS[token_in].usd_price).quantize(D(1))
        for quote in both(token_in, token_out, amount, t):
            assert quote.amount_out > 0
            assert quote.amount_out.as_tuple().exponent >= -TOKENS[token_out].decimals
            assert quote.price == pytest.approx(quote.amount_out / amount, rel=D("1e-10"))
            assert quote.ts == t and quote.latency_ms == 0


def test_meteora_fee_rises_with_market_volatility():
    calm = [meteora_fee("SOL", "USDC", t, Params(daily_vol=D(0))) for t in MOMENTS[:20]]
    wild = [meteora_fee("SOL", "USDC", t, Params(daily_vol=D("0.5"))) for t in MOMENTS[:20]]
    assert set(calm) == {BASE_FEE}
    assert sum(wild) / len(wild) > BASE_FEE * 2


@pytest.mark.parametrize(
    ("token_in", "token_out", "amount"),
    [
        ("SOL", "SOL", D(1)),
        ("SOL", "DOGE", D(1)),
        ("SOL", "USDC", D(0)),
        ("SOL", "USDC", D(-1)),
    ],
)
def test_invalid_requests_are_rejected(token_in, token_out, amount):
    with pytest.raises(ValueError):
        quote_at(Dex.RAYDIUM, token_in, token_out, amount, EPOCH, SIM)
