from dataclasses import dataclass
from decimal import Decimal

import pytest

from shared.domain.orders import OrderRequest
from shared.venues.base import Dex
from shared.venues.launches import (
    FINAL_LIQUIDITY_USD,
    INITIAL_LIQUIDITY_USD,
    depth_usd,
    events_between,
    is_listed,
    launch_of,
    reserve_of,
    schedule,
)


@dataclass(frozen=True)
class Sim:
    seed: str = "launch-tests"
    epoch: float = 1_000_000.0
    daily_vol: Decimal = Decimal("0.05")
    launch_first_s: float = 30.0
    launch_interval_s: float = 90.0
    liquidity_step_s: float = 10.0


SIM = Sim()


def test_one_launch_per_unlisted_token_at_its_slot_against_sol():
    launches = schedule(SIM)
    assert [launch.token for launch in launches] == ["WIF", "POPCAT", "MEW", "PNUT"]
    assert [launch.at - SIM.epoch for launch in launches] == [30.0, 120.0, 210.0, 300.0]
    assert {launch.quote for launch in launches} == {"SOL"}
    assert schedule(SIM) == launches  # a pure function of the seed
    assert {launch.dex for launch in schedule(Sim(seed="x"))} <= set(Dex)


def test_a_pool_exists_only_from_its_launch_and_only_on_its_venue():
    wif = launch_of("SOL", "WIF", SIM)
    other = Dex.RAYDIUM if wif.dex is Dex.METEORA else Dex.METEORA
    assert not is_listed("SOL", "WIF", wif.at - 0.001, SIM)
    assert is_listed("WIF", "SOL", wif.at, SIM)
    assert depth_usd(other, "SOL", "WIF", wif.at + 1000, SIM) is None
    assert depth_usd(wif.dex, "SOL", "WIF", wif.at, SIM) == INITIAL_LIQUIDITY_USD
    assert not is_listed("WIF", "USDC", wif.at + 1000, SIM)  # launched against SOL only
    assert is_listed("SOL", "USDC", SIM.epoch, SIM)  # listed from the start


def test_liquidity_doubles_each_step_up_to_its_final_depth():
    wif = launch_of("WIF", "SOL", SIM)
    levels = [wif.liquidity_usd(wif.at + step * SIM.liquidity_step_s) for step in range(10)]
    assert levels[:3] == [INITIAL_LIQUIDITY_USD, 2 * INITIAL_LIQUIDITY_USD, 4 * INITIAL_LIQUIDITY_USD]
    assert levels[-1] == FINAL_LIQUIDITY_USD and levels == sorted(levels)
    assert reserve_of("WIF", "SOL", wif.at, SIM) > 0 and reserve_of("WIF", "SOL", wif.at - 1, SIM) is None


def test_events_are_a_creation_then_liquidity_changes_each_once():
    wif = launch_of("SOL", "WIF", SIM)
    events = events_between(SIM, SIM.epoch, wif.at + 25)
    assert [(e.kind, e.step) for e in events] == [
        ("pool_created", 0),
        ("liquidity_changed", 1),
        ("liquidity_changed", 2),
    ]
    assert set(events[0].reserves) == {"WIF", "SOL"} and events[0].dex is wif.dex
    later = events_between(SIM, wif.at + 25, wif.at + 35)
    assert [e.step for e in later] == [3] and later[0].event_id == "WIF-SOL:" + wif.dex.value + ":3"


@pytest.mark.parametrize(
    ("trigger", "code"),
    [
        ({"kind": "rumour"}, "literal_error"),
        ({"kind": "liquidity"}, "missing_min_liquidity"),
        ({"kind": "liquidity", "minLiquidity": "0"}, "invalid_min_liquidity"),
        ({"kind": "listing", "minLiquidity": "5"}, "forbidden_field"),
        ({"kind": "listing", "extra": 1}, "extra_forbidden"),
    ],
)
def test_bad_sniper_triggers_are_refused(trigger, code):
    body = {"type": "sniper", "tokenIn": "SOL", "tokenOut": "WIF", "amount": "1", "trigger": trigger}
    with pytest.raises(Exception) as caught:
        OrderRequest.model_validate(body)
    assert code in {e["type"] for e in caught.value.errors()}
