"""The executor's stage logic on a real Redis store, with venues whose failures the test scripts."""

import itertools
import time
from decimal import Decimal

import pytest

from shared.execution.executor import ExecutionFailed, OrderExecutor
from shared.store.leases import OrderLeases
from shared.venues.base import Dex, VenueUnavailable
from shared.venues.ledger import InMemoryLedger
from shared.venues.simulated import SimConfig, SimulatedVenue, build_swap_transaction
from tests.support.orders import assert_gapless_and_legal, event_messages, make_store, place_market_order

SIM = SimConfig(seed="executor-tests", epoch=1_700_000_000.0, latency_scale=Decimal(0), failure_rate=Decimal(0))


class ScriptedVenue(SimulatedVenue):
    """A simulated venue whose first N quote/submit calls fail transiently."""

    def __init__(self, dex, ledger, *, quote_failures=0, submit_failures=0, clock=time.time):
        super().__init__(dex, SIM, ledger, clock=clock)
        self.quote_failures, self.submit_failures = quote_failures, submit_failures

    async def quote(self, *args):
        if self.quote_failures:
            self.quote_failures -= 1
            raise VenueUnavailable(f"{self.dex} quote timeout")
        return await super().quote(*args)

    async def submit(self, tx):
        if self.submit_failures:
            self.submit_failures -= 1
            raise VenueUnavailable(f"{self.dex} RPC error")
        return await super().submit(tx)


def executor(redis, venues, max_attempts=3):
    return OrderExecutor(
        make_store(redis), OrderLeases(redis, ttl_ms=5000), venues, build_swap_transaction, max_attempts=max_attempts
    )


async def test_a_failed_submit_is_retried_by_re_routing_with_a_higher_attempt(redis):
    ledger = InMemoryLedger()
    venues = {dex: ScriptedVenue(dex, ledger, submit_failures=1) for dex in Dex}
    run = executor(redis, venues)
    order = await place_market_order(run.store)
    with pytest.raises(VenueUnavailable):
        await run.execute(order.order_id, attempt=1)
    await run.execute(order.order_id, attempt=2)
    messages = await event_messages(run.store, order)
    assert [(m["status"], m["attempt"]) for m in messages] == [
        ("pending", None),
        ("routing", 1),
        ("building", 1),
        ("routing", 2),
        ("building", 2),
        ("submitted", 2),
        ("confirmed", 2),
    ]
    assert_gapless_and_legal(messages)
    assert len(await ledger.executions_for(str(order.order_id))) == 1


async def test_one_venue_down_still_routes_to_the_other(redis):
    ledger = InMemoryLedger()
    venues = {
        Dex.RAYDIUM: ScriptedVenue(Dex.RAYDIUM, ledger, quote_failures=1),
        Dex.METEORA: ScriptedVenue(Dex.METEORA, ledger),
    }
    run = executor(redis, venues)
    order = await place_market_order(run.store)
    await run.execute(order.order_id, attempt=1)
    messages = await event_messages(run.store, order)
    assert messages[1]["dex"] == "meteora" and set(messages[1]["quotes"]) == {"meteora"}
    assert messages[-1]["status"] == "confirmed"


async def test_the_last_attempt_persists_failed_before_dead_lettering(redis):
    ledger = InMemoryLedger()
    venues = {dex: ScriptedVenue(dex, ledger, quote_failures=10) for dex in Dex}
    run = executor(redis, venues, max_attempts=2)
    order = await place_market_order(run.store)
    with pytest.raises(VenueUnavailable):
        await run.execute(order.order_id, attempt=1)
    with pytest.raises(ExecutionFailed):
        await run.execute(order.order_id, attempt=2)
    state = await run.store.load(order.order_id)
    assert state.status == "failed" and state.fields["error"] == "venue_unavailable"
    await run.execute(order.order_id, attempt=3)  # a stray redelivery of a finished order does nothing
    assert len(await event_messages(run.store, order)) == 2


async def test_slippage_beyond_tolerance_fails_without_executing(redis):
    ledger = InMemoryLedger()
    minutes = itertools.count()

    def clock() -> float:  # a minute passes per venue call: the price drifts between quote and landing
        return time.time() + 60 * next(minutes)

    venues = {dex: ScriptedVenue(dex, ledger, clock=clock) for dex in Dex}
    run = executor(redis, venues)
    # slippageBps=0 and a price that moved before landing: an adverse move fails; find one such order.
    for _ in range(40):
        order = await place_market_order(run.store, amount="250", slippageBps=0)
        await run.execute(order.order_id, attempt=1)
        final = (await event_messages(run.store, order))[-1]
        if final["status"] == "failed":
            break
    assert final["error"] == "slippage_exceeded" and "minimum" in final["errorMessage"]
    assert final["txHash"]
    assert await ledger.executions_for(str(order.order_id)) == []
