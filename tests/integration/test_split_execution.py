"""Split routes executed as one transaction, routing quotes re-quoted once they expire, and transactions re-sent
only once their blockhash has certainly expired, on a real Redis."""

import contextlib
from decimal import Decimal

from shared.execution.executor import MAX_RESENDS, OrderExecutor
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

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class Crash(BaseException):
    """A worker stopping dead mid-execution: nothing the executor catches."""


class CrashingVenue(SimulatedVenue):
    """Stops the worker at `submit`, before or after the transaction reached the chain; drops the first
    `drops` transactions it is asked to confirm (they never land)."""

    def __init__(self, dex, ledger, clock, *, crash_before_send=0, crash_after_send=0, drops=None):
        super().__init__(dex, SIM, ledger, clock=clock, sleep=clock.sleep)
        self.crash_before_send, self.crash_after_send = crash_before_send, crash_after_send
        self.drops = drops if drops is not None else set()

    def _dropped(self, tx_hash):
        return tx_hash in self.drops

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
    venues[Dex.METEORA].drops = venues[Dex.RAYDIUM].drops  # one chain: either venue confirms the same way
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


class DroppedBy:
    """Drops the first `count` transactions confirmed, whichever venue confirms them."""

    def __init__(self, count: int) -> None:
        self.count, self.dropped = count, []

    def __contains__(self, tx_hash: str) -> bool:
        if tx_hash in self.dropped:
            return True
        if len(self.dropped) < self.count:
            self.dropped.append(tx_hash)
            return True
        return False


async def test_a_dropped_transaction_is_re_sent_only_once_its_blockhash_has_expired(redis):
    run, ledger, clock = setup(redis)
    dropped = DroppedBy(1)
    for venue in run.venues.values():
        venue.drops = dropped
    order = await place_market_order(run.store, amount="2000", slippageBps=100)
    await run.execute(order.order_id, attempt=1)

    messages = await event_messages(run.store, order)
    assert [m["status"] for m in messages] == [
        "pending", "routing", "building", "submitted", "routing", "building", "submitted", "confirmed",
    ]  # fmt: skip
    assert_gapless_and_legal(messages)
    first, resend = messages[2]["transaction"], messages[5]["transaction"]
    assert messages[4]["requoteReason"] == "blockhash_expired" and messages[4]["expiredTxHash"] == first["txHash"]
    assert resend["blockhash"] != first["blockhash"] and resend["lastValidSlot"] > first["lastValidSlot"]
    # Re-sent in a slot after the first transaction's last valid one, never while it could still land.
    assert messages[6]["slot"] > first["lastValidSlot"] >= messages[3]["slot"]
    outcomes = {r.tx_hash: r.outcome for r in await ledger.transactions_for(str(order.order_id))}
    assert outcomes.keys() == {first["txHash"], resend["txHash"]}
    assert outcomes[first["txHash"]].error == "blockhash_expired"
    assert [r.tx_hash for r in await ledger.executions_for(str(order.order_id))] == [resend["txHash"]]


async def test_an_order_whose_transactions_keep_expiring_fails_after_its_resends(redis):
    run, ledger, _ = setup(redis)
    for venue in run.venues.values():
        venue.drops = DroppedBy(100)
    order = await place_market_order(run.store)
    await run.execute(order.order_id, attempt=1)
    messages = await event_messages(run.store, order)
    assert [m["status"] for m in messages].count("submitted") == MAX_RESENDS + 1
    assert (messages[-1]["status"], messages[-1]["error"]) == ("failed", "blockhash_expired")
    assert await ledger.executions_for(str(order.order_id)) == []


async def test_a_retry_after_the_transaction_was_sent_settles_that_transaction(redis):
    run, ledger, _ = setup(redis, crash_after_send=1)
    order = await place_market_order(run.store)
    with contextlib.suppress(Crash):
        await run.execute(order.order_id, attempt=1)
    await run.execute(order.order_id, attempt=2)  # dramatiq's retry, as after an error once it was sent
    messages = await event_messages(run.store, order)
    assert [(m["status"], m["attempt"]) for m in messages] == [
        ("pending", None), ("routing", 1), ("building", 1), ("submitted", 1), ("confirmed", 1),
    ]  # fmt: skip
    assert len(await ledger.transactions_for(str(order.order_id))) == 1
