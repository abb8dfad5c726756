"""The ledger contract, run against both adapters: the in-memory stub and real Redis (db 9 by default)."""

import asyncio
import os
import secrets
from dataclasses import replace
from decimal import Decimal
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from shared import redis_keys
from shared.venues.base import Dex, LegResult, SwapLeg, TxOutcome, TxStatus
from shared.venues.ledger import InMemoryLedger, PoolId, PoolMoved, RedisLedger, TxRecord, order_transactions_key
from shared.venues.pool_shift import UNMOVED, PoolShift

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9")
#: Every tx_hash this run creates starts with it, so teardown deletes exactly our keys.
PREFIX = f"test-ledger-{secrets.token_hex(4)}-"


@pytest.fixture(params=["memory", "redis"])
async def ledger(request):
    if request.param == "memory":
        yield InMemoryLedger()
        return
    redis = Redis.from_url(REDIS_URL)
    try:
        yield RedisLedger(redis)
    finally:
        await _delete_our_keys(redis)
        await redis.aclose()


async def _delete_our_keys(redis: Redis) -> None:
    async for key in redis.scan_iter(match=redis_keys.venue_pool_shift("*", f"{PREFIX}*", "*")):
        await redis.delete(key)
    async for key in redis.scan_iter(match=redis_keys.venue_transaction(f"{PREFIX}*")):
        order_id = (await redis.hget(key, "order_id")).decode()
        await redis.delete(key, redis_keys.venue_nonce(order_id), order_transactions_key(order_id))


def record(order_id: str | None = None, attempt: int = 1, lands_at: float = 1_700_000_003.5) -> TxRecord:
    return TxRecord(
        tx_hash=PREFIX + secrets.token_hex(8),
        order_id=order_id or str(uuid4()),
        attempt=attempt,
        legs=(SwapLeg(Dex.METEORA, Decimal("1.500000001")),),
        token_in="SOL",
        token_out="USDC",
        min_amount_out=Decimal("220.123456"),
        submitted_at=1_700_000_001.25,
        lands_at=lands_at,
    )


def confirmed(tx_hash: str) -> TxOutcome:
    return TxOutcome(
        tx_hash,
        TxStatus.CONFIRMED,
        amount_out=Decimal("224.5"),
        executed_price=Decimal("149.66"),
        latency_ms=2250,
    )


def slipped(tx_hash: str) -> TxOutcome:
    return TxOutcome(tx_hash, TxStatus.FAILED, error="slippage_exceeded", message="too little", latency_ms=2100)


async def test_a_record_round_trips_exactly(ledger):
    tx = record()
    assert await ledger.record_submission(tx) == tx
    assert await ledger.get(tx.tx_hash) == tx
    assert await ledger.get(PREFIX + "missing") is None


async def test_a_split_and_its_legs_outcome_round_trip_exactly(ledger):
    legs = (SwapLeg(Dex.RAYDIUM, Decimal("1200.5")), SwapLeg(Dex.METEORA, Decimal("799.5")))
    tx = replace(record(), legs=legs)
    assert await ledger.record_submission(tx) == tx
    assert (await ledger.get(tx.tx_hash)).legs == legs and tx.amount_in == Decimal(2000)
    results = (
        LegResult(Dex.RAYDIUM, Decimal("1200.5"), Decimal("179000.123456")),
        LegResult(Dex.METEORA, Decimal("799.5"), Decimal("119000.000001")),
    )
    outcome = replace(confirmed(tx.tx_hash), amount_out=Decimal("298000.123457"), legs=results)
    assert await ledger.settle(tx.tx_hash, outcome) == outcome
    assert (await ledger.get(tx.tx_hash)).outcome == outcome


async def test_recording_is_idempotent_on_the_hash(ledger):
    tx = record()
    await ledger.record_submission(tx)
    assert await ledger.record_submission(replace(tx, lands_at=tx.lands_at + 10)) == tx
    assert await ledger.transactions_for(tx.order_id) == [tx]


async def test_the_first_settle_wins(ledger):
    tx = record()
    await ledger.record_submission(tx)
    assert await ledger.settle(tx.tx_hash, slipped(tx.tx_hash)) == slipped(tx.tx_hash)
    assert await ledger.settle(tx.tx_hash, confirmed(tx.tx_hash)) == slipped(tx.tx_hash)
    assert (await ledger.get(tx.tx_hash)).outcome == slipped(tx.tx_hash)


async def test_settling_an_unknown_transaction_is_an_error(ledger):
    with pytest.raises(LookupError):
        await ledger.settle(PREFIX + "missing", confirmed(PREFIX + "missing"))


async def test_an_order_executes_at_most_once(ledger):
    first = record()
    second = record(order_id=first.order_id, attempt=2)
    for tx in (first, second):
        await ledger.record_submission(tx)
    assert (await ledger.settle(first.tx_hash, confirmed(first.tx_hash))).status is TxStatus.CONFIRMED
    outcome = await ledger.settle(second.tx_hash, confirmed(second.tx_hash))
    assert (outcome.status, outcome.error, outcome.amount_out) == (TxStatus.FAILED, "nonce_used", None)
    assert first.tx_hash in outcome.message
    assert [r.tx_hash for r in await ledger.executions_for(first.order_id)] == [first.tx_hash]
    assert [r.attempt for r in await ledger.transactions_for(first.order_id)] == [1, 2]


async def test_a_failed_attempt_leaves_the_nonce_free(ledger):
    first = record()
    second = record(order_id=first.order_id, attempt=2)
    for tx in (first, second):
        await ledger.record_submission(tx)
    await ledger.settle(first.tx_hash, slipped(first.tx_hash))
    assert (await ledger.settle(second.tx_hash, confirmed(second.tx_hash))).status is TxStatus.CONFIRMED
    assert [r.tx_hash for r in await ledger.executions_for(first.order_id)] == [second.tx_hash]


async def test_concurrent_settles_of_one_order_confirm_exactly_once(ledger):
    orders = []
    for _ in range(20):
        first = record()
        second = record(order_id=first.order_id, attempt=2)
        for tx in (first, second):
            await ledger.record_submission(tx)
        orders.append((first, second))
    settles = [ledger.settle(tx.tx_hash, confirmed(tx.tx_hash)) for pair in orders for tx in pair]
    outcomes = await asyncio.gather(*settles)
    for i, (first, _) in enumerate(orders):
        pair = outcomes[2 * i : 2 * i + 2]
        assert sorted(o.status for o in pair) == [TxStatus.CONFIRMED, TxStatus.FAILED]
        assert len(await ledger.executions_for(first.order_id)) == 1


def pool_move(before: PoolShift, log_mid: str, dex: Dex = Dex.METEORA) -> tuple[PoolId, PoolShift, PoolShift]:
    return PoolId(dex, f"{PREFIX}SOL", "USDC"), before, PoolShift(Decimal(log_mid), 1_700_000_002.5)


async def test_a_confirmed_swap_moves_its_pools_in_the_same_step(ledger):
    tx = record()
    await ledger.record_submission(tx)
    move = pool_move(UNMOVED, "-0.0125")
    await ledger.settle(tx.tx_hash, confirmed(tx.tx_hash), moves=[move])
    assert await ledger.pool_shifts([move[0], PoolId(Dex.RAYDIUM, f"{PREFIX}SOL", "USDC")]) == [move[2], UNMOVED]


async def test_a_swap_priced_on_a_pool_that_moved_since_is_refused_and_writes_nothing(ledger):
    first, second = record(), record()
    for tx in (first, second):
        await ledger.record_submission(tx)
    move = pool_move(UNMOVED, "-0.0125")
    await ledger.settle(first.tx_hash, confirmed(first.tx_hash), moves=[move])
    with pytest.raises(PoolMoved):  # priced on the unmoved pool, which the first swap has moved
        await ledger.settle(second.tx_hash, confirmed(second.tx_hash), moves=[pool_move(UNMOVED, "-0.02")])
    assert (await ledger.get(second.tx_hash)).outcome is None
    assert await ledger.executions_for(second.order_id) == []
    assert await ledger.pool_shifts([move[0]]) == [move[2]]
    # Priced again on the moved pool, it settles.
    again = pool_move(move[2], "-0.025")
    assert (await ledger.settle(second.tx_hash, confirmed(second.tx_hash), moves=[again])).status is TxStatus.CONFIRMED
    assert await ledger.pool_shifts([move[0]]) == [again[2]]


async def test_a_failed_or_nonce_used_swap_moves_no_pool(ledger):
    slipped_tx, first = record(), record()
    duplicate = record(order_id=first.order_id, attempt=2)
    for tx in (slipped_tx, first, duplicate):
        await ledger.record_submission(tx)
    pool = pool_move(UNMOVED, "-0.01")[0]
    await ledger.settle(slipped_tx.tx_hash, slipped(slipped_tx.tx_hash), moves=[pool_move(UNMOVED, "-0.01")])
    assert await ledger.pool_shifts([pool]) == [UNMOVED]
    moved = pool_move(UNMOVED, "-0.01")
    await ledger.settle(first.tx_hash, confirmed(first.tx_hash), moves=[moved])
    outcome = await ledger.settle(duplicate.tx_hash, confirmed(duplicate.tx_hash), moves=[pool_move(moved[2], "-0.05")])
    assert outcome.error == "nonce_used"
    assert await ledger.pool_shifts([pool]) == [moved[2]]


async def test_a_quote_may_read_a_pool_as_of_the_last_slot_a_settle_never_does():
    redis = Redis.from_url(REDIS_URL)
    try:
        reader, writer = RedisLedger(redis), RedisLedger(redis)
        tx = record()
        await writer.record_submission(tx)
        pool = pool_move(UNMOVED, "0")[0]
        assert await reader.pool_shifts([pool], max_age_s=60) == [UNMOVED]
        moved = pool_move(UNMOVED, "-0.01")
        await writer.settle(tx.tx_hash, confirmed(tx.tx_hash), moves=[moved])
        assert await reader.pool_shifts([pool], max_age_s=60) == [UNMOVED]  # read within the window: kept
        assert await reader.pool_shifts([pool]) == [moved[2]]  # a settle's read: always fresh
        assert await reader.pool_shifts([pool], max_age_s=60) == [moved[2]]
    finally:
        await _delete_our_keys(redis)
        await redis.aclose()
