from decimal import Decimal

import pytest

from shared.domain.slippage import min_amount_out, within_slippage
from shared.routing import NoQuotes, choose_best
from shared.venues.base import Dex, Quote


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
