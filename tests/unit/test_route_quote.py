"""The quote's pure parts (shared/route_quote.py): whole percents that add up, impact, threshold."""

from decimal import Decimal

from shared.route_quote import CachedPool, quote_message, route_plan
from shared.route_split import Leg, Route
from shared.venues.base import Dex
from shared.venues.meteora import dlmm_pool
from shared.venues.raydium import cpmm_pool

RAYDIUM = cpmm_pool(Decimal(150), Decimal(20_000_000), Decimal(1))
METEORA = dlmm_pool(Decimal("150.01"), Decimal(20_000_000), Decimal(150), Decimal(1))
CURVES = {Dex.RAYDIUM: RAYDIUM, Dex.METEORA: METEORA}


def route(*shares: str) -> Route[Dex]:
    venues = [Dex.RAYDIUM, Dex.METEORA, Dex.RAYDIUM]
    return Route(tuple(Leg(venues[i], Decimal(share), Decimal(1)) for i, share in enumerate(shares)))


def test_percents_are_whole_and_add_up_to_100_by_largest_remainder():
    assert [leg["percent"] for leg in route_plan(route("66.6", "33.4"), CURVES)] == [67, 33]
    assert [leg["percent"] for leg in route_plan(route("1", "1", "1"), CURVES)] == [34, 33, 33]
    assert [leg["percent"] for leg in route_plan(route("5"), CURVES)] == [100]


def test_one_venue_for_a_small_amount_with_its_impact_threshold_slot_and_expiry():
    pools = [CachedPool(Dex.RAYDIUM, RAYDIUM, 1_000_000.0), CachedPool(Dex.METEORA, METEORA, 1_000_000.4)]
    quote = quote_message("SOL", "USDC", Decimal("0.5"), 100, pools, epoch=999_990.0)
    (leg,) = quote["routePlan"]
    assert leg["dex"] == "meteora" and leg["percent"] == 100 and leg["fee"] == str(METEORA.fee)
    out = Decimal(str(quote["outAmount"]))
    assert Decimal(str(quote["otherAmountThreshold"])) == (out * Decimal("0.99")).quantize(
        Decimal("1e-6"), "ROUND_DOWN"
    )
    assert quote["priceImpactPct"] == "0"  # inside the active bin an amount pays the first unit's rate
    assert quote["contextSlot"] == 26  # meteora's state, 10.4 s after the epoch, 400 ms a slot
    assert (quote["quotedAt"], quote["expiresAt"]) == ("1970-01-12T13:46:40.400Z", "1970-01-12T13:46:42.400Z")
