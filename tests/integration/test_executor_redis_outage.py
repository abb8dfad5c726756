"""The last attempt of an order that failed while Redis was away still ends the order `failed`."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

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
