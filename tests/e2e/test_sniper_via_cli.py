"""A sniper order on a simulated token launch, placed and followed with `order-engine submit`.

This module sorts after test_sniper_orders.py, which needs WIF unlisted when it starts; run alone, the
order simply waits for the launch (the fixture schedules it within 30 s)."""

import asyncio

import pytest

from tests.support.cli import cli_env, order_engine

SNIPER_PATH = ["pending", "waiting", "triggered", "routing", "building", "submitted", "confirmed"]


@pytest.fixture(scope="module")
def engine(sniper_engine):
    """This module's engine (and so `http`'s) is the one with a token launch scheduled."""
    return sniper_engine


async def test_a_sniper_order_on_a_launched_token_confirms_and_an_unlisted_pair_is_refused(engine):
    env = cli_env(engine.api_url)
    sniped, unlisted = await asyncio.gather(
        order_engine("submit", "SOL", "WIF", "0.1", "--listing", "--slippage-bps", "300", "--timeout", "90", "--json",
                     env=env),
        order_engine("submit", "SOL", "POPCAT", "1", env=env),  # launched only 10 minutes after WIF
    )  # fmt: skip
    assert sniped.returncode == 0, sniped
    events = [line for line in sniped.json_lines() if line["type"] == "status"]
    assert [event["status"] for event in events] == SNIPER_PATH
    # Placed before the launch it fires on pool_created; placed after, on whichever comes first of the sweep
    # (already_met, once a second) and the pool's next liquidity_changed event (every few seconds).
    assert events[2]["venueEvent"]["kind"] in ("pool_created", "already_met", "liquidity_changed")
    routed = events[3]
    assert list(routed["quotes"]) == [routed["dex"]]  # one venue has the new pool

    # Only the API knows which pools exist: the CLI's own check lets it through, the API refuses it.
    assert unlisted.returncode == 1, unlisted
    assert "no venue has a SOL-POPCAT pool yet; a sniper order can wait for it (HTTP 400 pair_not_listed)" in (
        unlisted.stderr
    )
