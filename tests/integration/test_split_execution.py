"""Split routes executed as one transaction, and routing quotes re-quoted once they expire, on a real Redis."""

import contextlib
from decimal import Decimal

from shared.execution.executor import OrderExecutor
from shared.route_quote import QUOTE_VALID_S
from shared.store.leases import OrderLeases
from shared.venues.base import Dex
from shared.venues.ledger import InMemoryLedger
from shared.venues.simulated import SimConfig, SimulatedVenue, build_swap_transaction
from tests.support.orders import assert_gapless_and_legal, event_messages, make_store, place_market_order

SIM = SimConfig(seed="split-tests", epoch=1_700_000_000.0, latency_scale=Decimal(0), failure_rate=Decimal(0))


class Clock:
    """Simulated time the test moves: the venues price and the executor ages quotes by the same clock."""

    def __init__(self) -> None:
        self.now = SIM.epoch + 3_600.0

    def __call__(self) -> float:
        return self.now


class Crash(BaseException):
    """A worker stopping dead mid-execution: nothing the executor catches."""


class CrashingVenue(SimulatedVenue):
    """Stops the worker at `submit`, before or after the transaction reached the chain."""

    def __init__(self, dex, ledger, clock, *, crash_before_send=0, crash_after_send=0):
        super().__init__(dex, SIM, ledger, clock=clock)
        self.crash_before_send, self.crash_after_send = crash_before_send, crash_after_send

    async def submit(self, tx):
        if self.crash_before_send:
            self.crash_before_send -= 1
            raise Crash
        sent = await super().submit(tx)
        if self.crash_after_send:
            self.crash_after_send -= 1
            raise Crash
        return sent


def setup(redis, **crashes):
    ledger, clock = InMemoryLedger(), Clock()
    venues = {dex: CrashingVenue(dex, ledger, clock, **crashes) for dex in Dex}
    run = OrderExecutor(
        make_store(redis), OrderLeases(redis, ttl_ms=5000), venues, build_swap_transaction, max_attempts=3, clock=clock
    )
    return run, ledger, clock


async def test_a_large_order_splits_into_one_transaction_whose_legs_land_together(redis):
    run, ledger, _ = setup(redis)
    order = await place_market_order(run.store, amount="2000", slippageBps=100)
    await run.execute(order.order_id, attempt=1)
    messages = await event_messages(run.store, order)
    assert [m["status"] for m in messages] == ["pending", "routing", "building", "submitted", "confirmed"]
    assert_gapless_and_legal(messages)
    routing, building, _, confirmed = messages[1:]

    plan = routing["routePlan"]
    assert {leg["dex"] for leg in plan} == {"raydium", "meteora"}
    assert sum(leg["percent"] for leg in plan) == 100
    assert sum(Decimal(leg["inAmount"]) for leg in plan) == Decimal(2000)
    quoted_out = sum(Decimal(leg["outAmount"]) for leg in plan)
    assert quoted_out > max(Decimal(q["amountOut"]) for q in routing["quotes"].values())
    assert Decimal(routing["otherAmountThreshold"]) == (quoted_out * Decimal("0.99")).quantize(Decimal("0.000001"))
    assert Decimal(routing["priceImpactPct"]) > 0
    assert routing["dex"] == max(plan, key=lambda leg: Decimal(leg["inAmount"]))["dex"]

    transaction = building["transaction"]
    amounts = [Decimal(leg["inAmount"]) for leg in transaction["legs"]]
    assert amounts == sorted(amounts, reverse=True) and transaction["dex"] == routing["dex"]
    assert transaction["instructions"].count("swap:raydium") == transaction["instructions"].count("swap:meteora") == 1

    legs = confirmed["legs"]
    assert {leg["dex"] for leg in legs} == {"raydium", "meteora"}
    assert sum(Decimal(leg["outAmount"]) for leg in legs) == Decimal(confirmed["amountOut"])
    assert Decimal(confirmed["amountOut"]) == quoted_out  # the clock stood still: nothing moved
    (execution,) = await ledger.executions_for(str(order.order_id))
    assert execution.tx_hash == confirmed["txHash"] and len(execution.legs) == 2


async def test_a_small_order_goes_whole_to_one_venue(redis):
    run, ledger, _ = setup(redis)
    order = await place_market_order(run.store, amount="1")
    await run.execute(order.order_id, attempt=1)
    routing, *_, confirmed = (await event_messages(run.store, order))[1:]
    assert [(leg["dex"], leg["percent"], leg["inAmount"]) for leg in routing["routePlan"]] == [
        (routing["dex"], 100, "1")
    ]
    assert confirmed["legs"] == [{"dex": routing["dex"], "inAmount": "1", "outAmount": confirmed["amountOut"]}]


async def test_a_quote_that_expired_before_its_transaction_was_sent_is_requoted(redis):
    run, ledger, clock = setup(redis, crash_before_send=1)
    order = await place_market_order(run.store, amount="2000", slippageBps=100)
    with contextlib.suppress(Crash):
        await run.execute(order.order_id, attempt=1)
    clock.now += QUOTE_VALID_S + 1  # the redelivered message comes back after the quote's validity
    await run.execute(order.order_id, attempt=1)

    messages = await event_messages(run.store, order)
    assert [(m["status"], m["attempt"], m.get("requoted")) for m in messages] == [
        ("pending", None, None),
        ("routing", 1, None),
        ("building", 1, None),
        ("routing", 1, True),
        ("building", 1, None),
        ("submitted", 1, None),
        ("confirmed", 1, None),
    ]
    assert_gapless_and_legal(messages)
    assert messages[3]["expiresAt"] > messages[1]["expiresAt"]
    assert messages[5]["txHash"] == messages[4]["transaction"]["txHash"] != messages[2]["transaction"]["txHash"]
    assert len(await ledger.transactions_for(str(order.order_id))) == 1


async def test_a_transaction_already_sent_is_never_requoted(redis):
    run, ledger, clock = setup(redis, crash_after_send=1)
    order = await place_market_order(run.store, amount="2000", slippageBps=100)
    with contextlib.suppress(Crash):
        await run.execute(order.order_id, attempt=1)
    clock.now += QUOTE_VALID_S + 1
    await run.execute(order.order_id, attempt=1)

    messages = await event_messages(run.store, order)
    assert [m["status"] for m in messages] == ["pending", "routing", "building", "submitted", "confirmed"]
    assert messages[3]["txHash"] == messages[2]["transaction"]["txHash"]
    assert len(await ledger.transactions_for(str(order.order_id))) == 1
    assert len(await ledger.executions_for(str(order.order_id))) == 1
