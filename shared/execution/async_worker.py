"""A dramatiq worker that keeps hundreds of coroutine actors in flight on one event loop.

dramatiq's own `AsyncIO` middleware runs a coroutine actor on an event loop but parks a worker thread
on it until it ends, so in-flight messages per process = threads. Here one dispatch thread hands each
message's coroutine to the loop and returns at once. When a coroutine succeeds, the loop itself runs
the `after_process_message` middleware and acks the message with dramatiq's own dispatch script on the
loop's (auto-pipelining) Redis client, so hundreds of acks share round trips instead of each costing a
thread hand-off and a blocking call; when it fails, a finisher thread runs the usual middleware (Retries,
dead letters) and acks or nacks it. A message therefore stays unacked in Redis for exactly as long as its
coroutine runs, which keeps dramatiq's crash recovery: a worker that dies mid-order leaves its messages
to be re-delivered. Sync actors, if any, still run the ordinary way on the dispatch thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import SkipMessage
from dramatiq.worker import ConsumerThread, WorkerThread
from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.execution.dramatiq_internals import REDIS_MESSAGE_ID, ThreadFactoryWorker, WorkQueue, dispatch_args
from shared.service import new_event_loop

_Result = TypeVar("_Result")

#: The message whose coroutine is running, for actors that need its options (e.g. the retry count).
current_message: contextvars.ContextVar[MessageProxy] = contextvars.ContextVar("current_message")

#: How long a graceful stop waits for in-flight coroutines before handing their messages back.
DEFAULT_DRAIN_TIMEOUT_S = 10.0
#: How long the dispatch thread waits for a fetched message before looking again (dramatiq's worker_timeout):
#: each look is a wake-up of an idle worker, and a stop is noticed at the next one.
DISPATCH_TIMEOUT_MS = 250

#: What a coroutine's future holds once the loop has acked its message (nothing is left to do but count it),
#: or when the loop could not reach Redis to ack it (the finisher acks it, waiting Redis out).
_ACKED_ON_LOOP, _ACK_ON_FINISHER = object(), object()


class LoopThread:
    """An asyncio event loop running in a daemon thread, for code that lives on the loop."""

    #: How long `stop` waits for the loop's thread to end (it is a daemon: the process exits regardless).
    STOP_JOIN_S = 5.0

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="event-loop", daemon=True)

    def start(self) -> LoopThread:
        self._thread.start()
        return self

    def run(self, coroutine: Coroutine[Any, Any, _Result], timeout: float | None = None) -> _Result:
        """Run a coroutine on the loop from another thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=self.STOP_JOIN_S)


class LoopAcks:
    """Acks messages from the event loop with the script `RedisBroker` itself acks with.

    The arguments are the ones `RedisBroker._dispatch("ack")` builds (heartbeat, maintenance chance and all:
    `dramatiq_internals.dispatch_args`), so the broker's bookkeeping in Redis is exactly what a thread's ack
    would have left.
    """

    def __init__(self, broker: RedisBroker, redis: Redis) -> None:
        self.broker = broker
        self._dispatch = redis.register_script(broker.scripts["dispatch"].script)

    async def ack(self, message: MessageProxy) -> None:
        broker = self.broker
        args = [*dispatch_args(broker, "ack", message.queue_name), message.options[REDIS_MESSAGE_ID]]
        await self._dispatch(keys=[broker.namespace], args=args)


def attempt_of(message: MessageProxy) -> int:
    """1 for the first delivery, +1 for each retry dramatiq scheduled."""
    return int(message.options.get("retries", 0)) + 1


class _DispatchThread(WorkerThread):
    def __init__(
        self,
        *,
        owner: AsyncWorker,
        broker: dramatiq.Broker,
        consumers: dict[str, ConsumerThread],
        work_queue: WorkQueue,
        worker_timeout: int,
    ) -> None:
        super().__init__(broker=broker, consumers=consumers, work_queue=work_queue, worker_timeout=worker_timeout)
        self.owner = owner

    def process_message(self, message: MessageProxy) -> None:
        actor = self.broker.get_actor(message.actor_name)
        coroutine_fn = getattr(actor.fn, "__wrapped__", None)
        if message.failed or not inspect.iscoroutinefunction(coroutine_fn):
            super().process_message(message)
            return
        try:
            self.broker.emit_before("process_message", message)
        except SkipMessage:
            self.broker.emit_after("skip_message", message)
            self.owner.settle(message)
            return

        async def run() -> object:
            current_message.set(message)
            result: object = await coroutine_fn(*message.args, **message.kwargs)
            acks = self.owner.acks
            if acks is None:
                return result
            return await self.owner.ack_on_loop(message, result, acks)

        future = asyncio.run_coroutine_threadsafe(run(), self.owner.loop)
        self.owner.track(message, future)


class AsyncWorker(ThreadFactoryWorker):
    def __init__(
        self,
        broker: dramatiq.Broker,
        *,
        loop: asyncio.AbstractEventLoop,
        max_in_flight: int,
        queues: set[str] | None = None,
        worker_timeout: int = DISPATCH_TIMEOUT_MS,
        acks: LoopAcks | None = None,
    ) -> None:
        super().__init__(broker, queues=queues, worker_timeout=worker_timeout, worker_threads=1)
        self.acks = acks
        # Prefetch is what bounds unacked messages, hence orders in flight, for this process.
        self.queue_prefetch = max_in_flight
        self.loop = loop
        self._in_flight: dict[str, tuple[MessageProxy, Future[object]]] = {}
        self._abandoned: set[str] = set()
        self._lock = threading.Lock()
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dramatiq-finisher")

    def make_worker_thread(self) -> _DispatchThread:
        return _DispatchThread(
            owner=self,
            broker=self.broker,
            consumers=self.consumers,
            work_queue=self.work_queue,
            worker_timeout=self.worker_timeout,
        )

    @property
    def in_flight(self) -> int:
        """Messages whose coroutine is running (for a gauge: read without the lock, a moment's value)."""
        return len(self._in_flight)

    def track(self, message: MessageProxy, future: Future[object]) -> None:
        with self._lock:
            self._in_flight[message.message_id] = (message, future)
        future.add_done_callback(lambda done: self._done(message, done))

    async def ack_on_loop(self, message: MessageProxy, result: object, acks: LoopAcks) -> object:
        """The end of a successful coroutine, on the loop: middleware, then the ack (see `LoopAcks`)."""
        self.broker.emit_after("process_message", message, result=result)
        try:
            self.broker.emit_before("ack", message)
            await acks.ack(message)
        except (RedisError, OSError) as exc:
            logger.warning("cannot ack {} from the event loop ({!r}); the finisher will", message, exc)
            return _ACK_ON_FINISHER
        self.broker.emit_after("ack", message)
        return _ACKED_ON_LOOP

    def _done(self, message: MessageProxy, future: Future[object]) -> None:
        # Thread-safe: it runs where the coroutine's future is resolved (the loop), or on the dispatch thread
        # if that future was already resolved when `track` added this callback.
        if not future.cancelled() and future.exception() is None and future.result() is _ACKED_ON_LOOP:
            if self._forget(message):
                consumer = self.consumers[message.queue_name].consumer
                getattr(consumer, "queued_message_ids", set()).discard(message.message_id)  # as its ack() does
                self.work_queue.task_done()
                message.clear_exception()
            return
        self._finisher.submit(self._finish, message, future)

    def _forget(self, message: MessageProxy) -> bool:
        """Stop tracking a finished message; False if a stop already handed it back."""
        with self._lock:
            self._in_flight.pop(message.message_id, None)
            if message.message_id in self._abandoned:
                self._abandoned.discard(message.message_id)
                return False
        return True

    def _finish(self, message: MessageProxy, future: Future[object]) -> None:
        if not self._forget(message):
            return
        exception = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if exception is None:
            if future.result() is not _ACK_ON_FINISHER:  # else the loop already ran the middleware
                self.broker.emit_after("process_message", message, result=future.result())
        else:
            message.stuff_exception(exception)
            try:
                raise exception  # so middleware that formats the current traceback sees this one
            except BaseException:
                self.broker.emit_after("process_message", message, exception=exception)
        self.settle(message)

    def settle(self, message: MessageProxy) -> None:
        try:
            self.consumers[message.queue_name].post_process_message(message)
        finally:
            self.work_queue.task_done()
            message.clear_exception()

    def stop(self, timeout: int = 600_000, drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S) -> None:
        """Stop taking messages, let running orders finish, hand back the rest un-counted."""
        for consumer in self.consumers.values():
            consumer.pause()
        deadline = time.monotonic() + drain_timeout_s
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            leftovers = list(self._in_flight.values())
            self._abandoned.update(message.message_id for message, _ in leftovers)
        if leftovers:
            logger.warning("handing {} unfinished messages back to the queue", len(leftovers))
        for message, future in leftovers:
            future.cancel()
            self.consumers[message.queue_name].requeue_messages([message])
            self.work_queue.task_done()
        super().stop(timeout)
        self._finisher.shutdown(wait=True)
