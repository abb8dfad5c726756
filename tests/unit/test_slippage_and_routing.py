from decimal import Decimal

import pytest

from shared.domain.slippage import min_amount_out, within_slippage
from shared.routing import NoQuotes, choose_best, choose_route
from shared.venues.base import Dex, Quote, SwapLeg
from shared.venues.market import quote_at
from shared.venues.simulated import SimConfig


@pytest.mark.parametrize(
    ("quoted", "bps", "decimals", "expected"),
    [
        (Decimal("100"), 50, 6, Decimal("99.5")),
        (Decimal("100"), 0, 6, Decimal("100")),
        (Decimal("100"), 5000, 6, Decimal("50")),
        (Decimal("224.630496"), 50, 6, Decimal("223.507343")),  # rounded down, never up
        (Decimal("1.999999999"), 1, 9, Decimal("1.999799999")),
    ],
)
def test_min_amount_out(quoted, bps, decimals, expected):
    assert min_amount_out(quoted, bps, decimals) == expected


def test_within_slippage_is_inclusive():
    assert within_slippage(Decimal("99.5"), Decimal("99.5"))
    assert not within_slippage(Decimal("99.499999"), Decimal("99.5"))


def quote(dex: Dex, out: str, fee: str = "0.0025") -> Quote:
    amount_out = Decimal(out)
    return Quote(
        dex, "SOL", "USDC", Decimal(1), amount_out, Decimal(fee), amount_out, amount_out, Decimal(0), Decimal(1000), 0.0
    )


def test_best_net_output_wins():
    decision = choose_best([quote(Dex.RAYDIUM, "149.9"), quote(Dex.METEORA, "150.1")])
    assert decision.best.dex is Dex.METEORA
    assert decision.runner_up.dex is Dex.RAYDIUM
    assert set(decision.quotes_message()) == {"raydium", "meteora"}


def test_tie_goes_to_the_cheaper_fee_then_raydium():
    assert choose_best([quote(Dex.RAYDIUM, "150", "0.003"), quote(Dex.METEORA, "150", "0.002")]).best.dex is Dex.METEORA
    assert choose_best([quote(Dex.METEORA, "150"), quote(Dex.RAYDIUM, "150")]).best.dex is Dex.RAYDIUM


def test_one_venue_is_enough_and_none_is_an_error():
    assert choose_best([quote(Dex.METEORA, "1")]).best.dex is Dex.METEORA
    with pytest.raises(NoQuotes):
        choose_best([])


SIM = SimConfig(seed="routing-tests", epoch=1_700_000_000.0)
AT = SIM.epoch + 3_600.0


def market_quotes(amount: str, *, meteora_later_by: float = 0.0) -> list[Quote]:
    return [
        quote_at(Dex.RAYDIUM, "SOL", "USDC", Decimal(amount), AT, SIM),
        quote_at(Dex.METEORA, "SOL", "USDC", Decimal(amount), AT + meteora_later_by, SIM),
    ]


def test_a_small_order_routes_whole_to_the_best_venue():
    quotes = market_quotes("1")
    routed = choose_route(quotes, "SOL", "USDC", Decimal(1))
    best = choose_best(quotes).best
    assert routed.shape == "single" and routed.legs == (SwapLeg(best.dex, Decimal(1)),)
    assert routed.quoted_out == best.amount_out and routed.dex is best.dex
    (leg,) = routed.plan()
    assert leg == {"dex": best.dex.value, "percent": 100, "inAmount": "1", "outAmount": str(best.amount_out)} | {
        "fee": str(best.fee)
    }


def test_a_large_order_splits_largest_leg_first_and_pays_more_than_either_venue():
    quotes = market_quotes("2000", meteora_later_by=0.5)
    routed = choose_route(quotes, "SOL", "USDC", Decimal(2000))
    assert routed.shape == "split" and {leg.dex for leg in routed.legs} == set(Dex)
    amounts = [leg.amount_in for leg in routed.legs]
    assert amounts == sorted(amounts, reverse=True) and sum(amounts) == Decimal(2000)
    assert routed.dex is routed.legs[0].dex
    assert routed.quoted_out > max(q.amount_out for q in quotes)
    assert routed.quoted_at == AT  # the oldest quote the route leans on
    assert Decimal(0) < routed.price_impact_pct() < Decimal(5)


def test_a_quote_without_its_pool_cannot_be_routed():
    with pytest.raises(ValueError, match="pool"):
        choose_route([quote(Dex.RAYDIUM, "150")], "SOL", "USDC", Decimal(1))
