"""A retry scheduled while Redis is down is not dropped: the execution of the order would stop for good."""

from __future__ import annotations

import dramatiq
import redis
from dramatiq.broker import MessageProxy

from shared.execution import broker as broker_module
from shared.execution.broker import DurableRetries


class FlakyBroker:
    """Just what the Retries middleware uses: the actor's options and an enqueue that fails `outage` times."""

    def __init__(self, outage: int) -> None:
        self.outage = outage
        self.enqueued: list[tuple[dict, int]] = []
        self.actor = type("Actor", (), {"options": {}})()

    def get_actor(self, name: str):
        return self.actor

    def enqueue(self, message, *, delay=None):
        if self.outage:
            self.outage -= 1
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.enqueued.append((dict(message.options), delay))


def test_a_retry_that_redis_refuses_is_enqueued_once_redis_is_back(monkeypatch):
    monkeypatch.setattr(broker_module, "REENQUEUE_MIN_S", 0.001)
    flaky = FlakyBroker(outage=2)
    message = MessageProxy(dramatiq.Message("execution", "execute_order", ("order-1",), {}, {}))
    DurableRetries(max_retries=2, min_backoff=10, max_backoff=20).after_process_message(
        flaky, message, exception=ConnectionError("Redis went away mid-order")
    )
    assert len(flaky.enqueued) == 1
    options, delay = flaky.enqueued[0]
    assert options["retries"] == 1  # counted once, not once per failed try to enqueue
    assert delay is not None and not message.failed
