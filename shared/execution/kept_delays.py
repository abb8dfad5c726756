"""Middleware: a consumer thread that loses Redis keeps the retries it was holding until their eta.

dramatiq's consumer thread holds a fetched retry in an in-memory delay queue until its back-off has passed,
then enqueues it on the ready queue and acknowledges the delayed copy. On a broker connection error it
replaces that queue with an empty one (`self.delay_queue = PriorityQueue()` in dramatiq/worker.py) and the
messages in it are gone from memory, yet still unacknowledged under this worker's id in Redis. The worker's
heartbeat goes on, so no other worker ever re-delivers them: the order stays mid-lifecycle for good (seen
in the fault suite as an order stuck in `building` after a Redis kill). Right after, the thread's `close()`
would try to hand whatever the queue holds back to Redis, which is just what is unreachable.

Here the replacement queue starts with the old one's messages, and the `close()` that follows a lost
connection leaves them there; the restarted consumer enqueues each when its eta passes and acknowledges
the delayed copy, as it would have. A `close()` at shutdown still hands them back to Redis, as dramatiq does.
The dramatiq internals this relies on are listed (and tested) in `dramatiq_internals`.
"""

from __future__ import annotations

import contextlib
import functools

from dramatiq.broker import Broker
from dramatiq.common import iter_queue
from dramatiq.middleware import Middleware
from dramatiq.worker import ConsumerThread

from shared.execution.dramatiq_internals import WorkQueue, swap_class


class KeepDelayedMessagesOnReconnect(Middleware):
    def after_consumer_thread_boot(self, broker: Broker, thread: ConsumerThread) -> None:
        queue = thread.__dict__.pop("delay_queue")
        # mypy takes a class for unhashable when it is an argument to a cached function (python/mypy#11470).
        swap_class(thread, _keeping(type(thread)))  # type: ignore[arg-type]
        thread.__dict__["_kept_delay_queue"] = queue


@functools.cache
def _keeping(thread_class: type[ConsumerThread]) -> type:
    def get(thread: ConsumerThread) -> WorkQueue:
        queue: WorkQueue = thread.__dict__["_kept_delay_queue"]
        return queue

    def replace(thread: ConsumerThread, new: WorkQueue) -> None:
        # dramatiq assigns a new queue only in its connection-error handler.
        old = thread.__dict__.get("_kept_delay_queue")
        if old is not None and old is not new:
            for item in iter_queue(old):  # type: ignore[no-untyped-call]  # dramatiq leaves it unannotated
                new.put(item)
                old.task_done()
            thread.__dict__["_connection_lost"] = True
        thread.__dict__["_kept_delay_queue"] = new

    def close(thread: ConsumerThread) -> None:
        if not thread.__dict__.pop("_connection_lost", False):
            thread_class.close(thread)
            return
        with contextlib.suppress(Exception):  # the connection is gone already
            if thread.consumer:
                thread.consumer.close()

    members = {"delay_queue": property(get, replace), "close": close}
    return type(thread_class.__name__, (thread_class,), members)
