"""The last attempt of an order that failed while Redis was away still ends the order `failed`; Redis lost for
a moment (a failover) mid-execution costs the order time, not an attempt."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError

from shared.execution import executor as executor_module
from shared.execution.executor import ExecutionFailed
from shared.venues.base import Dex
from shared.venues.ledger import InMemoryLedger
from tests.integration.test_executor import ScriptedVenue, executor
from tests.support.orders import event_messages, place_market_order


async def test_the_last_attempt_waits_for_redis_to_persist_failed(redis, monkeypatch):
    monkeypatch.setattr(executor_module, "MARK_FAILED_MIN_S", 0.01)
    ledger = InMemoryLedger()
    run = executor(redis, {dex: ScriptedVenue(dex, ledger, quote_failures=10) for dex in Dex}, max_attempts=1)
    order = await place_market_order(run.store)
    load, calls = run.store.load, []

    async def load_while_redis_comes_back(order_id):
        calls.append(order_id)
        if 2 <= len(calls) <= 3:  # the lease's read works; the first two reads after the failure do not
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return await load(order_id)

    monkeypatch.setattr(run.store, "load", load_while_redis_comes_back)
    with pytest.raises(ExecutionFailed):
        await run.execute(order.order_id, attempt=1)
    messages = await event_messages(run.store, order)
    assert [m["status"] for m in messages] == ["pending", "failed"]
    assert messages[-1]["error"] == "venue_unavailable"


@pytest.mark.parametrize(
    "lost",
    [
        ReadOnlyError("You can't write against a read only replica."),  # a plain client on a demoted master
        RedisConnectionError("The previous master is now a slave"),  # what a Sentinel-managed client raises
    ],
    ids=["readonly", "connection"],
)
async def test_a_failover_mid_execution_costs_the_last_attempt_time_not_the_order(redis, monkeypatch, lost):
    """Redis lost (a failover) while the only attempt writes its routing: the executor drives on from the
    stored state once Redis answers, and the order confirms instead of ending `failed`."""
    monkeypatch.setattr(executor_module, "REDIS_RETRY_MIN_S", 0.01)
    ledger = InMemoryLedger()
    run = executor(redis, {dex: ScriptedVenue(dex, ledger) for dex in Dex}, max_attempts=1)
    order = await place_market_order(run.store)
    append_steps, failures = run.store.append_steps, [lost, lost]

    async def append_steps_during_a_failover(*args, **kwargs):
        if failures:
            raise failures.pop()
        return await append_steps(*args, **kwargs)

    monkeypatch.setattr(run.store, "append_steps", append_steps_during_a_failover)
    await run.execute(order.order_id, attempt=1)
    messages = await event_messages(run.store, order)
    assert [m["status"] for m in messages] == ["pending", "routing", "building", "submitted", "confirmed"]
    assert {m["attempt"] for m in messages[1:]} == {1}
    assert len(await ledger.executions_for(str(order.order_id))) == 1


async def test_redis_away_longer_than_the_ride_out_is_the_attempts_failure(redis, monkeypatch):
    monkeypatch.setattr(executor_module, "REDIS_RIDE_OUT_S", 0.05)
    monkeypatch.setattr(executor_module, "REDIS_RETRY_MIN_S", 0.01)
    ledger = InMemoryLedger()
    run = executor(redis, {dex: ScriptedVenue(dex, ledger) for dex in Dex}, max_attempts=2)
    order = await place_market_order(run.store)

    async def redis_gone(*args, **kwargs):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(run.store, "append_steps", redis_gone)
    with pytest.raises(RedisConnectionError):  # dramatiq retries the message, as for any failed attempt
        await run.execute(order.order_id, attempt=1)
    assert [m["status"] for m in await event_messages(run.store, order)] == ["pending"]


async def test_redis_away_when_the_lease_is_taken_costs_time_not_an_attempt(redis, monkeypatch):
    """The take that lands but whose reply is lost (writes the replicas cannot acknowledge yet) is sent again
    with the same token, and finds the lease its own instead of waiting out its TTL."""
    monkeypatch.setattr(executor_module, "REDIS_RETRY_MIN_S", 0.01)
    ledger = InMemoryLedger()
    run = executor(redis, {dex: ScriptedVenue(dex, ledger) for dex in Dex}, max_attempts=1)
    order = await place_market_order(run.store)
    take_and_read, replies_lost = run.leases.take_and_read, [1, 1]

    async def take_whose_reply_is_lost(order_id, lease=None):
        taken = await take_and_read(order_id, lease)
        if replies_lost:
            replies_lost.pop()
            raise RedisConnectionError("0 of 2 replicas acknowledged the write in time")
        return taken

    monkeypatch.setattr(run.leases, "take_and_read", take_whose_reply_is_lost)
    await run.execute(order.order_id, attempt=1)
    messages = await event_messages(run.store, order)
    assert [m["status"] for m in messages] == ["pending", "routing", "building", "submitted", "confirmed"]
