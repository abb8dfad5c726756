"""The dramatiq worker that keeps many coroutine actors in flight on one dispatch thread, on real Redis."""

import asyncio
import threading

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from shared.execution.async_worker import AsyncWorker, LoopAcks, LoopThread, attempt_of, current_message
from shared.redis_client import redis_client

QUEUE = "async-worker-test"


@pytest.fixture
def broker(redis_url):
    broker = RedisBroker(url=redis_url, middleware=[Retries(max_retries=2, min_backoff=10, max_backoff=50)])
    broker.client.flushdb()  # flush_all() knows only the queues declared so far: none yet
    yield broker
    broker.close()


@pytest.fixture(params=["acked-on-the-loop", "acked-by-the-finisher"])
def acks(request, broker, redis_url):
    """The worker both ways: successes acked from the event loop (as the execution worker runs), or all by
    the finisher thread."""
    return LoopAcks(broker, redis_client(redis_url, auto_pipeline=True)) if request.param.endswith("loop") else None


def _unacked(redis_url) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    return sum(client.scard(key) for key in client.scan_iter(f"dramatiq:__acks__.*.{QUEUE}"))


def test_hundreds_of_waiting_coroutines_share_one_dispatch_thread(broker, acks, redis_url):
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
    worker = AsyncWorker(broker, loop=loop.loop, max_in_flight=500, queues={QUEUE}, acks=acks)
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
    assert _unacked(redis_url) == 0  # and every one of them was acked
    assert worker.consumers[QUEUE].consumer.outstanding_message_count == 0  # the prefetch budget is back


def test_when_the_loop_cannot_ack_the_finisher_does(broker, redis_url):
    loop = LoopThread().start()
    done = []

    class Unreachable(LoopAcks):
        async def ack(self, message):
            raise ConnectionError("redis is away")

    @dramatiq.actor(queue_name=QUEUE, broker=broker)
    async def quick(i: int) -> None:
        done.append(i)

    for i in range(20):
        quick.send(i)
    worker = AsyncWorker(
        broker, loop=loop.loop, max_in_flight=50, queues={QUEUE}, acks=Unreachable(broker, redis_client(redis_url))
    )
    worker.start()
    try:
        broker.join(QUEUE, timeout=30_000)
        worker.join()
    finally:
        worker.stop()
        loop.stop()
    assert sorted(done) == list(range(20))  # each ran once: an ack that failed is not a failed message
    assert _unacked(redis_url) == 0


def test_failures_go_through_dramatiq_retries_and_end_dead_lettered(broker, acks, redis_url):
    loop = LoopThread().start()
    attempts = []

    @dramatiq.actor(queue_name=QUEUE, broker=broker, max_retries=2, min_backoff=10, max_backoff=50)
    async def always_fails() -> None:
        attempts.append(attempt_of(current_message.get()))
        raise RuntimeError("venue down")

    always_fails.send()
    worker = AsyncWorker(broker, loop=loop.loop, max_in_flight=10, queues={QUEUE}, acks=acks)
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
