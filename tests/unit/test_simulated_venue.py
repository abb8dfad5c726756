from decimal import Decimal
from uuid import uuid4

import base58
import pytest

from shared import redis_keys
from shared.settings import Settings
from shared.venues.base import BlockhashExpired, Dex, SwapLeg, TxStatus, VenueUnavailable
from shared.venues.ledger import InMemoryLedger
from shared.venues.market import quote_at
from shared.venues.simulated import SimConfig, SimulatedVenue, build_swap_transaction, load_sim_config
from shared.venues.slots import certainly_expired_at, recent_blockhash, slot_at

D = Decimal
EPOCH = 1_700_000_000.0
ZERO = D(0)
#: The blockhash of the FakeTime's first slot, valid for Solana's 150 slots.
RECENT = recent_blockhash("venue-test", EPOCH + 60, EPOCH)


class FakeTime:
    """A clock that only moves when the venue sleeps, so latencies are observable and tests are instant."""

    def __init__(self, now: float = EPOCH + 60) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def config(**overrides) -> SimConfig:
    values = {
        "seed": "venue-test",
        "epoch": EPOCH,
        "latency_scale": D(0),
        "failure_rate": D(0),
        "daily_vol": D("0.05"),
    }
    return SimConfig(**(values | overrides))


def venue(dex: Dex = Dex.RAYDIUM, ledger=None, time: FakeTime | None = None, **overrides) -> SimulatedVenue:
    time = time or FakeTime()
    return SimulatedVenue(dex, config(**overrides), ledger or InMemoryLedger(), clock=time.clock, sleep=time.sleep)


def swap(dex: Dex = Dex.RAYDIUM, order_id=None, attempt: int = 1, min_out: Decimal = ZERO):
    return build_swap_transaction(
        order_id or uuid4(),
        attempt,
        (SwapLeg(dex, D(2)),),
        "SOL",
        "USDC",
        min_out,
        native_sol_in=True,
        native_sol_out=False,
        recent=RECENT,
    )


async def submitted_hash(sim_venue, tx) -> str:
    return (await sim_venue.submit(tx)).tx_hash


async def test_without_latency_nothing_sleeps_and_quotes_match_the_market():
    time = FakeTime()
    sim_venue = venue(Dex.METEORA, time=time)
    quote = await sim_venue.quote("SOL", "USDC", D(2))
    assert quote == quote_at(Dex.METEORA, "SOL", "USDC", D(2), time.now, config())
    tx_hash = (await sim_venue.submit(swap(Dex.METEORA))).tx_hash
    outcome = await sim_venue.confirm(tx_hash)
    assert outcome.status is TxStatus.CONFIRMED and outcome.latency_ms == 0
    assert time.sleeps == []


async def test_latencies_follow_the_documented_ranges_and_scale():
    time = FakeTime()
    sim_venue = venue(time=time, latency_scale=D(1))
    quote = await sim_venue.quote("SOL", "USDC", D(1))
    assert 150 <= quote.latency_ms <= 250 and time.sleeps == [quote.latency_ms / 1000]
    sent = await sim_venue.submit(swap())
    assert 0.05 <= time.sleeps[1] <= 0.15 and sent.latency_ms == round(time.sleeps[1] * 1000)
    tx_hash = sent.tx_hash
    outcome = await sim_venue.confirm(tx_hash)
    assert 1700 <= outcome.latency_ms <= 2600
    assert abs(time.sleeps[2] - outcome.latency_ms / 1000) < 0.002

    doubled = FakeTime()
    slow = await venue(time=doubled, latency_scale=D(2)).quote("SOL", "USDC", D(1))
    assert slow.latency_ms == pytest.approx(2 * quote.latency_ms, abs=1)


async def test_draws_replay_with_the_same_seed():
    async def latencies(seed: str) -> list[int]:
        sim_venue = venue(seed=seed, latency_scale=D(1), time=FakeTime())
        return [(await sim_venue.quote("SOL", "USDC", D(1))).latency_ms for _ in range(5)]

    assert await latencies("a") == await latencies("a")
    assert await latencies("a") != await latencies("b")


async def test_failure_rate_one_makes_every_call_unavailable_and_records_nothing():
    ledger = InMemoryLedger()
    sim_venue = venue(ledger=ledger, failure_rate=D(1))
    with pytest.raises(VenueUnavailable):
        await sim_venue.quote("SOL", "USDC", D(1))
    tx = swap()
    with pytest.raises(VenueUnavailable):
        await sim_venue.submit(tx)
    assert await ledger.get(tx.tx_hash) is None


async def test_some_calls_fail_at_a_partial_failure_rate():
    sim_venue = venue(failure_rate=D("0.3"))
    failures = 0
    for _ in range(300):
        try:
            await sim_venue.quote("SOL", "USDC", D(1))
        except VenueUnavailable:
            failures += 1
    assert 50 < failures < 130


async def test_submit_is_idempotent():
    ledger = InMemoryLedger()
    time = FakeTime()
    sim_venue = venue(ledger=ledger, time=time, latency_scale=D(1))
    tx = swap()
    first = (await sim_venue.submit(tx)).tx_hash
    landing = (await ledger.get(first)).lands_at
    assert (await sim_venue.submit(tx)).tx_hash == first == tx.tx_hash
    assert len(await ledger.transactions_for(str(tx.order_id))) == 1
    assert (await ledger.get(first)).lands_at == landing


async def test_confirm_executes_at_the_landing_price_once():
    ledger = InMemoryLedger()
    sim_venue = venue(ledger=ledger)
    tx = swap()
    outcome = await sim_venue.confirm(await submitted_hash(sim_venue, tx))
    record = await ledger.get(tx.tx_hash)
    expected = quote_at(Dex.RAYDIUM, "SOL", "USDC", D(2), record.lands_at, config())
    assert outcome.status is TxStatus.CONFIRMED
    assert (outcome.amount_out, outcome.executed_price) == (expected.amount_out, expected.price)
    assert await sim_venue.confirm(tx.tx_hash) == outcome
    assert [r.tx_hash for r in await ledger.executions_for(str(tx.order_id))] == [tx.tx_hash]


async def test_min_out_above_achievable_fails_with_slippage_and_executes_nothing():
    ledger = InMemoryLedger()
    sim_venue = venue(ledger=ledger)
    tx = swap(min_out=D(10_000))
    outcome = await sim_venue.confirm(await submitted_hash(sim_venue, tx))
    assert outcome.status is TxStatus.FAILED and outcome.error == "slippage_exceeded"
    assert outcome.amount_out is None and "10000" in outcome.message
    assert await ledger.executions_for(str(tx.order_id)) == []


async def test_a_second_attempt_of_an_executed_order_hits_the_nonce():
    ledger = InMemoryLedger()
    sim_venue = venue(ledger=ledger)
    order_id = uuid4()
    first = await sim_venue.confirm(await submitted_hash(sim_venue, swap(order_id=order_id, attempt=1)))
    second = await sim_venue.confirm(await submitted_hash(sim_venue, swap(order_id=order_id, attempt=2)))
    assert first.status is TxStatus.CONFIRMED
    assert (second.status, second.error) == (TxStatus.FAILED, "nonce_used")
    assert len(await ledger.executions_for(str(order_id))) == 1


def split_swap(min_out: Decimal, order_id=None):
    legs = (SwapLeg(Dex.RAYDIUM, D(1200)), SwapLeg(Dex.METEORA, D(800)))
    return build_swap_transaction(order_id or uuid4(), 1, legs, "SOL", "USDC", min_out, True, False, recent=RECENT)


async def test_a_split_transaction_lands_every_leg_at_its_own_pool_and_pays_their_total():
    ledger = InMemoryLedger()
    sim_venue = venue(ledger=ledger)
    tx = split_swap(min_out=ZERO)
    assert tx.instructions == ("wrapSol", "swap:raydium", "swap:meteora") and tx.amount_in == D(2000)
    outcome = await sim_venue.confirm(await submitted_hash(sim_venue, tx))
    record = await ledger.get(tx.tx_hash)
    expected = {
        dex: quote_at(dex, "SOL", "USDC", amount, record.lands_at, config()).amount_out
        for dex, amount in ((Dex.RAYDIUM, D(1200)), (Dex.METEORA, D(800)))
    }
    assert outcome.status is TxStatus.CONFIRMED
    assert [(leg.dex, leg.amount_in, leg.amount_out) for leg in outcome.legs] == [
        (Dex.RAYDIUM, D(1200), expected[Dex.RAYDIUM]),
        (Dex.METEORA, D(800), expected[Dex.METEORA]),
    ]
    assert outcome.amount_out == sum(expected.values())
    assert [leg.dex for leg in record.legs] == [Dex.RAYDIUM, Dex.METEORA]


async def test_a_split_whose_total_falls_short_executes_no_leg():
    ledger = InMemoryLedger()
    sim_venue = venue(ledger=ledger)
    achievable = (await sim_venue.confirm(await submitted_hash(sim_venue, split_swap(ZERO)))).amount_out
    tx = split_swap(min_out=achievable + D("0.000001"))  # one unit above what both legs pay together
    outcome = await sim_venue.confirm(await submitted_hash(sim_venue, tx))
    assert (outcome.status, outcome.error, outcome.legs) == (TxStatus.FAILED, "slippage_exceeded", ())
    assert await ledger.executions_for(str(tx.order_id)) == []


async def test_a_venue_relays_a_split_that_has_a_leg_on_it():
    assert (await venue(Dex.METEORA).submit(split_swap(ZERO))).tx_hash


async def test_unknown_transaction_is_reported_not_raised():
    outcome = await venue().confirm("nope")
    assert (outcome.status, outcome.error) == (TxStatus.FAILED, "tx_not_found")


async def test_a_venue_refuses_another_venues_transaction():
    with pytest.raises(ValueError):
        await venue(Dex.RAYDIUM).submit(swap(Dex.METEORA))


def test_native_sol_is_wrapped_in_and_unwrapped_out():
    order_id = uuid4()

    def instructions(native_in: bool, native_out: bool, dex: Dex = Dex.RAYDIUM) -> tuple[str, ...]:
        legs = (SwapLeg(dex, D(1)),)
        return build_swap_transaction(
            order_id, 1, legs, "SOL", "USDC", D(0), native_in, native_out, recent=RECENT
        ).instructions

    assert instructions(True, False) == ("wrapSol", "swap:raydium")
    assert instructions(False, True, Dex.METEORA) == ("swap:meteora", "unwrapSol")
    assert instructions(False, False) == ("swap:raydium",)


def test_transaction_hash_looks_like_a_solana_signature_and_is_stable():
    order_id = uuid4()
    tx = build_swap_transaction(
        order_id, 1, (SwapLeg(Dex.RAYDIUM, D(1)),), "SOL", "USDC", D(140), True, False, recent=RECENT
    )
    assert 87 <= len(tx.tx_hash) <= 88 and len(base58.b58decode(tx.tx_hash)) == 64
    again = build_swap_transaction(
        order_id, 1, (SwapLeg(Dex.RAYDIUM, D(1)),), "SOL", "USDC", D(140), True, False, recent=RECENT
    )
    assert again == tx
    others = {
        build_swap_transaction(
            order_id, a, (SwapLeg(d, D(1)),), "SOL", "USDC", D(140), True, False, recent=RECENT
        ).tx_hash
        for a in (1, 2)
        for d in Dex
    }
    assert len(others) == 4


class FakeRedis:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def set(self, key: str, value: str, nx: bool = False) -> bool:
        if nx and key in self.values:
            return False
        self.values[key] = value.encode()
        return True

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)


async def test_sim_config_is_fixed_by_the_first_process():
    redis = FakeRedis()
    settings = Settings(sim_seed=None, sim_latency_scale=D("0.5"), sim_failure_rate=D("0.1"))
    first = await load_sim_config(redis, settings, clock=lambda: EPOCH)
    second = await load_sim_config(redis, settings, clock=lambda: EPOCH + 500)
    assert first == second and first.epoch == EPOCH and len(first.seed) >= 16
    assert redis.values[redis_keys.SIM_SEED].decode() == first.seed
    assert (first.latency_scale, first.failure_rate, first.daily_vol) == (D("0.5"), D("0.1"), D("0.05"))
    pinned = await load_sim_config(redis, Settings(sim_seed="fixed"))
    assert pinned.seed == "fixed" and pinned.epoch == EPOCH


class CountingLedger(InMemoryLedger):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, tx_hash):
        self.reads += 1
        return await super().get(tx_hash)


async def test_confirming_what_this_venue_sent_reads_no_ledger_and_a_stranger_reads_it_once():
    ledger = CountingLedger()
    tx = swap()
    sender = venue(ledger=ledger)
    outcome = await sender.confirm(await submitted_hash(sender, tx))
    assert outcome.status is TxStatus.CONFIRMED and ledger.reads == 0
    # Another process (a retry after a crash) knows only the hash: it reads the ledger and sees the same outcome.
    assert await venue(ledger=ledger).confirm(tx.tx_hash) == outcome and ledger.reads == 1


async def test_a_service_started_while_redis_is_away_waits_for_it_instead_of_exiting(monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from shared.venues import simulated

    monkeypatch.setattr(simulated, "SIM_CONFIG_RETRY_MIN_S", 0.001)

    class AwayThenBack(FakeRedis):
        def __init__(self) -> None:
            super().__init__()
            self.refusals = 3

        async def set(self, *args, **kwargs):
            if self.refusals:
                self.refusals -= 1
                raise RedisConnectionError("Connection refused")
            return await super().set(*args, **kwargs)

    redis = AwayThenBack()
    config = await load_sim_config(redis, Settings(sim_seed="fixed"), clock=lambda: EPOCH)
    assert redis.refusals == 0 and config.epoch == EPOCH


async def test_a_dropped_transaction_is_known_dead_only_once_its_blockhash_expired():
    time, ledger = FakeTime(), InMemoryLedger()
    sim_venue = venue(ledger=ledger, time=time, drop_rate=D(1))
    tx = swap()
    sent = await sim_venue.submit(tx)
    assert sent.slot == slot_at(time.now, EPOCH) <= tx.last_valid_slot
    outcome = await sim_venue.confirm(tx.tx_hash)
    assert (outcome.status, outcome.error) == (TxStatus.FAILED, "blockhash_expired")
    assert time.now == certainly_expired_at(tx.last_valid_slot, EPOCH)  # waited it out, not a moment less
    assert slot_at(time.now, EPOCH) == tx.last_valid_slot + 1
    assert await ledger.executions_for(str(tx.order_id)) == []


async def test_a_transaction_that_would_land_after_its_last_valid_slot_expires_instead():
    time = FakeTime()
    sim_venue = venue(time=time, latency_scale=D(1), blockhash_valid_slots=2)
    tx = build_swap_transaction(
        uuid4(), 1, (SwapLeg(Dex.RAYDIUM, D(1)),), "SOL", "USDC", ZERO, True, False,
        recent=sim_venue.recent_blockhash(),
    )  # fmt: skip
    await sim_venue.submit(tx)  # accepted within 150 ms, but landing takes 1.7 s or more: past 2 slots
    assert (await sim_venue.confirm(tx.tx_hash)).error == "blockhash_expired"


async def test_the_chain_refuses_a_transaction_on_an_expired_blockhash():
    time = FakeTime(now=certainly_expired_at(RECENT.last_valid_slot, EPOCH))
    with pytest.raises(BlockhashExpired):
        await venue(time=time).submit(swap())
