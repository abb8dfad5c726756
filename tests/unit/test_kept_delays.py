"""dramatiq's real consumer thread, fed a delayed retry and then a broker connection error."""

from __future__ import annotations

import threading
import time
from queue import PriorityQueue

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import BrokerConnectionError
from dramatiq.worker import ConsumerThread

from shared.execution.kept_delays import KeepDelayedMessagesOnReconnect


class FlakyBroker(StubBroker):
    """Hands out one delayed message, then loses its connection; later consumers find nothing."""

    def __init__(self, delayed, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delayed = delayed
        self.lost = threading.Event()
        self.requeued: list = []

    def consume(self, queue_name, prefetch=1, timeout=100):
        broker = self

        class Consumer:
            def __iter__(self):
                return self

            def __next__(self):
                if broker.delayed is not None:
                    message, broker.delayed = broker.delayed, None
                    return message
                if not broker.lost.is_set():
                    broker.lost.set()
                    raise BrokerConnectionError("Redis went away")
                time.sleep(0.01)
                return None

            def requeue(self, messages):
                broker.requeued.extend(messages)

            def close(self):
                pass

        return Consumer()


def a_delayed_retry() -> dramatiq.MessageProxy:
    eta = int(time.time() * 1000) + 3_600_000  # far off: it must still be held after the reconnect
    message = dramatiq.Message("execution.DQ", "execute_order", ("order",), {}, {"eta": eta})
    return dramatiq.MessageProxy(message)


def run_until_the_connection_is_lost(middleware) -> ConsumerThread:
    broker = FlakyBroker(a_delayed_retry(), middleware=middleware)
    thread = ConsumerThread(
        broker=broker, prefetch=1, queue_name="execution.DQ", work_queue=PriorityQueue(), worker_timeout=100
    )
    thread.start()
    assert broker.lost.wait(5)
    time.sleep(0.1)  # the thread handles the error, closes its consumer, then sleeps 3 s before a new one
    thread.running = False
    return thread


def test_dramatiq_alone_forgets_a_held_retry_when_redis_goes_away():
    thread = run_until_the_connection_is_lost(middleware=[])
    # The bug this middleware exists for: dropped from memory, and nothing handed back to Redis.
    assert thread.delay_queue.qsize() == 0 and thread.broker.requeued == []


def test_with_the_middleware_the_held_retry_survives_the_reconnect():
    thread = run_until_the_connection_is_lost(middleware=[KeepDelayedMessagesOnReconnect()])
    assert thread.broker.requeued == []  # not handed to the Redis that just went away
    assert thread.delay_queue.qsize() == 1
    assert thread.delay_queue.get_nowait().message.actor_name == "execute_order"


def test_at_shutdown_held_retries_still_go_back_to_redis():
    broker = FlakyBroker(None, middleware=[KeepDelayedMessagesOnReconnect()])
    thread = ConsumerThread(
        broker=broker, prefetch=1, queue_name="execution.DQ", work_queue=PriorityQueue(), worker_timeout=100
    )
    broker.emit_after("consumer_thread_boot", thread)
    thread.consumer = broker.consume("execution.DQ")
    thread.handle_message(a_delayed_retry())
    thread.close()
    assert [message.actor_name for message in broker.requeued] == ["execute_order"]
