"""Pool states as the quote cache stores them (shared/venues/pool_state.py): every kind round-trips exactly."""

from decimal import Decimal

import pytest

from shared.venues.meteora import dlmm_pool
from shared.venues.pool_state import UnknownPool, pool_from_json, pool_to_json
from shared.venues.raydium import cpmm_pool


@pytest.mark.parametrize(
    "pool",
    [
        cpmm_pool(Decimal("151.123456789"), Decimal(20_000_000), Decimal(1)),
        cpmm_pool(Decimal("0.0000213"), Decimal(2_000_000), Decimal(1)).reversed(),
        dlmm_pool(Decimal("151.1"), Decimal(20_000_000), Decimal("151.1"), Decimal(1), fee=Decimal("0.00456")),
        dlmm_pool(Decimal("0.0000213"), Decimal(2_000_000), Decimal("0.0000213"), Decimal(1)).reversed(),
    ],
    ids=["cpmm", "cpmm-reversed", "dlmm", "dlmm-reversed"],
)
def test_a_pool_comes_back_as_it_went_and_quotes_the_same(pool):
    back = pool_from_json(pool_to_json(pool))
    assert back == pool
    assert back.amount_out(Decimal("12.5")) == pool.amount_out(Decimal("12.5"))


def test_a_kind_it_does_not_know_is_refused_both_ways():
    with pytest.raises(UnknownPool):
        pool_to_json(object())  # type: ignore[arg-type]
    with pytest.raises(UnknownPool):
        pool_from_json('{"kind": "orderbook"}')
    with pytest.raises(UnknownPool):
        pool_from_json("[1, 2]")
