"""An idle execution consumer waits for work instead of polling: it fetches when its queue gets a message,
however that message got there, and not ten times a second while nothing arrives."""

from __future__ import annotations

import threading
import time
import uuid
from queue import PriorityQueue

import dramatiq
import pytest
import redis
from dramatiq.broker import MessageProxy
from dramatiq.worker import _WorkQueueItem

from shared import redis_keys
from shared.execution import broker as broker_module
from shared.execution.broker import EngineBroker
from shared.execution.messages import EXECUTE_ORDER


@pytest.fixture
def engine_broker(redis_url):
    broker = EngineBroker(url=redis_url, namespace=redis_keys.dramatiq_namespace(0))
    yield broker
    broker.client.close()


def _fetches(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_an_idle_consumer_wakes_on_a_push_not_on_a_timer(engine_broker, monkeypatch):
    # Waits far longer than any pick-up below may take: a message seen sooner was seen because it came.
    monkeypatch.setattr(broker_module, "IDLE_WAIT_S", 30.0)
    queue = f"idle-{uuid.uuid4().hex[:8]}"
    consumer = engine_broker.consume(queue, prefetch=4, timeout=100)
    assert next(consumer) is None  # an empty fetch: the consumer is idle now
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(next(consumer)))
    fetches_before = _fetches(engine_broker.client)
    reader.start()
    time.sleep(1.0)
    assert reader.is_alive() and not got  # blocked, waiting for work
    assert _fetches(engine_broker.client) - fetches_before <= 1  # and not fetching meanwhile
    sent = engine_broker.enqueue(dramatiq.Message(queue, EXECUTE_ORDER, ("o-1",), {}, {}))
    reader.join(10)
    assert not reader.is_alive(), "the push did not wake the consumer"
    assert got and got[0] is not None and got[0].message_id == sent.message_id
    assert engine_broker.client.llen(redis_keys.dramatiq_queue(0, queue)) == 0  # the wait moved nothing
    consumer.close()


def test_an_idle_consumer_holding_a_retry_wakes_when_it_falls_due(engine_broker, monkeypatch):
    """A consumer thread's delayed messages (retries held until their eta) bound its wait: the thread hands
    them on when due, so it must not sleep past that."""
    monkeypatch.setattr(broker_module, "IDLE_WAIT_S", 30.0)
    queue = f"idle-{uuid.uuid4().hex[:8]}"
    consumer = engine_broker.consume(queue, prefetch=4, timeout=100)
    assert next(consumer) is None
    holder = threading.Thread(target=lambda: None)  # stands for the consumer's ConsumerThread
    due_in_ms = 300
    eta = int(time.time() * 1000) + due_in_ms
    holder.delay_queue = PriorityQueue()  # type: ignore[attr-defined]
    message = dramatiq.Message(queue, EXECUTE_ORDER, ("o-2",), {}, {})
    holder.delay_queue.put(_WorkQueueItem(eta, MessageProxy(message)))  # type: ignore[attr-defined]
    returned_at: list[float] = []

    def wait_once() -> None:
        next(consumer)
        returned_at.append(time.time() * 1000)

    holder.run = wait_once  # type: ignore[method-assign]
    holder.start()
    holder.join(10)
    assert returned_at and returned_at[0] < eta + 5_000  # by the eta (plus a fetch), not after 30 s
    consumer.close()
