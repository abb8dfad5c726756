"""The dramatiq worker that keeps many coroutine actors in flight on one dispatch thread, on real Redis."""

import asyncio
import threading

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from shared.execution.async_worker import AsyncWorker, LoopThread, attempt_of, current_message

QUEUE = "async-worker-test"


@pytest.fixture
def broker(redis_url):
    broker = RedisBroker(url=redis_url, middleware=[Retries(max_retries=2, min_backoff=10, max_backoff=50)])
    broker.flush_all()
    yield broker
    broker.close()


def test_hundreds_of_waiting_coroutines_share_one_dispatch_thread(broker):
    loop = LoopThread().start()
    running, peak, done = 0, 0, []
    lock = threading.Lock()

    @dramatiq.actor(queue_name=QUEUE, broker=broker)
    async def wait_like_a_venue(i: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        await asyncio.sleep(1.0)  # a simulated venue call: no thread should be held meanwhile
        with lock:
            running -= 1
            done.append(i)

    for i in range(400):
        wait_like_a_venue.send(i)
    worker = AsyncWorker(broker, loop=loop.loop, max_in_flight=500, queues={QUEUE})
    worker.start()
    try:
        broker.join(QUEUE, timeout=60_000)
        worker.join()
    finally:
        worker.stop()
        loop.stop()
    assert sorted(done) == list(range(400))
    assert len(worker.workers) == 1  # one dispatch thread...
    assert peak >= 300  # ...yet hundreds of messages were in flight together


def test_failures_go_through_dramatiq_retries_and_end_dead_lettered(broker, redis_url):
    loop = LoopThread().start()
    attempts = []

    @dramatiq.actor(queue_name=QUEUE, broker=broker, max_retries=2, min_backoff=10, max_backoff=50)
    async def always_fails() -> None:
        attempts.append(attempt_of(current_message.get()))
        raise RuntimeError("venue down")

    always_fails.send()
    worker = AsyncWorker(broker, loop=loop.loop, max_in_flight=10, queues={QUEUE})
    worker.start()
    try:
        broker.join(QUEUE, timeout=30_000)
        worker.join()
    finally:
        worker.stop()
        loop.stop()
    assert attempts == [1, 2, 3]
    import redis

    assert redis.Redis.from_url(redis_url).zcard(f"dramatiq:{QUEUE}.XQ") == 1
