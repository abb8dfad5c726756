"""Every place the engine reaches past dramatiq's public API, in one module.

Tested with dramatiq `>=2.2.1,<2.3` (the range pinned in pyproject.toml); tests/unit/test_dramatiq_internals.py
and tests/integration/test_dramatiq_queue_format.py fail, naming the internal and this range, when an upgrade
moves any of them. Before widening the pin, run them and re-read the upstream links below: if upstream fixed
the problem, the workaround can go instead.

What we rely on, why, and what upstream says about it:

- `dramatiq.brokers.redis._RedisConsumer` (as `RedisConsumer`): its constructor `(broker, queue_name, prefetch,
  timeout)`, its `message_cache` list and `__next__`, and `RedisBroker.consumer_class` building it. Subclassed by
  `broker.LingeringConsumer` to wait a few milliseconds between fetches. No upstream issue known (a tuning
  of ours, not a dramatiq bug).
- `RedisBroker._should_do_maintenance(command)`, `RedisBroker._max_unpack_size()` and the argument order of
  `RedisBroker._dispatch` / the `dispatch` script (`broker.scripts["dispatch"]`): `dispatch_args` rebuilds
  them so `async_worker.LoopAcks` can ack from an asyncio Redis client with dramatiq's own script. The half-stack
  unpack size is dramatiq's answer to its issue 433 (Lua stack overflow). No upstream issue known for an
  asyncio ack path.
- `_RedisConsumer.__next__` fetching at once when its cache is empty, and sleeping (up to its `timeout`) only
  after a fetch found nothing: `broker.LingeringConsumer` waits for its queue to be non-empty before the fetch
  of an idle consumer instead. It runs on the consumer's own `ConsumerThread`, whose `delay_queue` (a
  `PriorityQueue` of `_WorkQueueItem`, `priority` = eta in ms) bounds that wait: `next_delayed_eta_ms`. No
  upstream issue known (dramatiq's Redis consumer polls by design).
- `_RedisConsumer.queued_message_ids`: an ack made on the loop discards the id from it, as `_RedisConsumer.ack`
  does. No upstream issue known.
- `dramatiq.Worker._add_worker`: `ThreadFactoryWorker` overrides it so `AsyncWorker` can start its own
  `WorkerThread` subclass (dramatiq has no hook for the thread class). No upstream issue known.
- `ConsumerThread.delay_queue` as a plain instance attribute that the connection-error handler of
  `ConsumerThread.run` replaces with an empty `PriorityQueue()`, and `ConsumerThread.close()` handing the delay
  queue back to Redis: `kept_delays` swaps the thread's `__class__` (`swap_class`) for a subclass whose
  `delay_queue` property keeps the old messages (typed `WorkQueue`, after dramatiq's private `_WorkQueueItem`).
  The loss itself: no upstream issue known (dramatiq issue 527, "Delayed Jobs aren't run after cycling Redis",
  reports a similar symptom).
- `Retries.after_process_message` enqueueing the retry inside `emit_after`, which logs and swallows a broker
  error, after which the worker acks the original: `broker.DurableRetries` re-tries the enqueue. Upstream:
  dramatiq PR 545 ("Mark message as failed when fail to process"; open), whose thread describes this loss.
- dramatiq's Redis layout and message format, written by hand: the queue is the list `<namespace>:<queue>` of
  message ids and the hash `<namespace>:<queue>.msgs` id → `Message.encode()` bytes, with the id also in the
  message's `redis_message_id` option (what the `enqueue` command of dramatiq's dispatch.lua does). The order
  store's Lua scripts (shared/store/lua/create_order.lua, transition.lua: enqueue atomically with the order),
  `hand_enqueue` (dead-letter replay) and `messages.execute_order_message` write it; the key names are
  `shared.redis_keys.dramatiq_*`. No upstream issue known (dramatiq has no atomic "enqueue with my own write").
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from queue import PriorityQueue
from typing import TYPE_CHECKING, TypeAlias

import dramatiq
import redis
import redis.asyncio
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.worker import WorkerThread

if TYPE_CHECKING:  # only a type: an upgrade that moves it breaks mypy, not the engine
    from dramatiq.worker import _WorkQueueItem

#: The dramatiq versions everything here was tested with (the pin in pyproject.toml).
TESTED_RANGE = ">=2.2.1,<2.3"

#: dramatiq's Redis consumer, to subclass.
RedisConsumer = _RedisConsumer

#: The message option under which RedisBroker keeps a message's id in Redis.
REDIS_MESSAGE_ID = "redis_message_id"

#: A worker's `work_queue` and a consumer thread's `delay_queue` (retries held until their eta).
WorkQueue: TypeAlias = "PriorityQueue[_WorkQueueItem]"


def dispatch_args(broker: RedisBroker, command: str, queue_name: str) -> list[str | int]:
    """The leading arguments of dramatiq's `dispatch` script, as `RedisBroker._dispatch(command)` builds them."""
    return [
        command,
        current_millis(),
        queue_name,
        broker.broker_id,
        broker.heartbeat_timeout,
        broker.dead_message_ttl,
        broker._should_do_maintenance(command),
        broker._max_unpack_size(),  # type: ignore[no-untyped-call]  # dramatiq leaves it unannotated
    ]


class ThreadFactoryWorker(dramatiq.Worker, metaclass=ABCMeta):
    """A dramatiq Worker whose worker threads come from `make_worker_thread` (dramatiq's `_add_worker`)."""

    @abstractmethod
    def make_worker_thread(self) -> WorkerThread: ...

    def _add_worker(self) -> None:
        worker = self.make_worker_thread()
        worker.start()
        self.workers.append(worker)


def swap_class(instance: object, cls: type) -> None:
    """Give a live dramatiq object (a ConsumerThread) a subclass of its own class."""
    instance.__class__ = cls


def hand_enqueue(
    pipe: redis.client.Pipeline | redis.asyncio.client.Pipeline,
    queue_key: str,
    messages_key: str,
    redis_message_id: str,
    data: bytes,
) -> None:
    """Queue an encoded message the way dispatch.lua's `enqueue` command does, on a (transaction) pipeline."""
    pipe.hset(messages_key, redis_message_id, data)
    pipe.rpush(queue_key, redis_message_id)


def next_delayed_eta_ms(thread: object) -> int | None:
    """The eta (ms since the epoch) of the earliest delayed message `thread` (a dramatiq `ConsumerThread`)
    holds, if it is one and holds any."""
    delayed = getattr(thread, "delay_queue", None)
    if not isinstance(delayed, PriorityQueue):
        return None
    with delayed.mutex:  # a PriorityQueue's `queue` is a heap: its first item is the earliest
        return int(delayed.queue[0].priority) if delayed.queue else None
