"""The dramatiq broker every execution-side process builds the same way."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import redis
from dramatiq.broker import Broker, MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.errors import BrokerConnectionError, ConnectionClosed
from dramatiq.middleware import AgeLimit, Retries
from loguru import logger

from shared import redis_keys
from shared.execution.dramatiq_internals import RedisConsumer, next_delayed_eta_ms
from shared.execution.kept_delays import KeepDelayedMessagesOnReconnect
from shared.redis_client import REDIS_UNAVAILABLE, replica_count, sync_redis_client
from shared.redis_replicas import ReplicaCount, blocking_barrier
from shared.settings import Settings

#: Longest an idle consumer blocks waiting for its queue to get a message (see `LingeringConsumer`): its
#: thread notices a stop only between waits, so this bounds how long a stopping worker waits on it.
IDLE_WAIT_S = 1.0
#: Waits shorter than this are not worth a round trip: the consumer fetches at once instead.
MIN_BLOCK_S = 0.01
#: Back-off while Redis cannot take a retry's message.
REENQUEUE_MIN_S, REENQUEUE_MAX_S = 0.5, 5.0
#: Errors that mean "Redis cannot take it yet" (READONLY included: a failover in progress), not "never".
ENQUEUE_CAN_WAIT: tuple[type[Exception], ...] = (*REDIS_UNAVAILABLE, BrokerConnectionError)


class DurableRetries(Retries):
    """dramatiq's Retries, except that scheduling a retry waits out a Redis outage instead of dropping it.

    dramatiq's own middleware enqueues the retry and, if Redis is down at that moment, the error is only
    logged (`emit_after` swallows it); the worker then acks the original message once Redis is back, so the
    order is never attempted again and stays stuck mid-lifecycle. Here the enqueue is repeated, with the
    message's options as they were before each try, until Redis takes it; only then is the original acked.
    Upstream: dramatiq PR 545 (see `dramatiq_internals`).

    With `replica_count`, a retry counts as scheduled only once the replicas hold it: replication keeps
    order, so a retry lost with a failed master would take the original's ack with it, and the original would
    sit acknowledged by nobody under a live worker, never delivered again (shared/redis_replicas.py). A
    retry that landed although the replicas did not confirm it in time is scheduled twice: a duplicate
    delivery, which the order's lease and its events' `seq` absorb as they absorb any other.
    """

    def __init__(self, *, replica_count: ReplicaCount | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.replica_count = replica_count

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        options = copy.deepcopy(message.options)
        delay = REENQUEUE_MIN_S
        while True:
            try:
                # dramatiq's Retries leaves this override unannotated.
                super().after_process_message(  # type: ignore[no-untyped-call]
                    broker, message, result=result, exception=exception
                )
                if exception is not None and isinstance(broker, RedisBroker):
                    blocking_barrier(broker.client, self.replica_count)
                return
            except ENQUEUE_CAN_WAIT as exc:
                logger.warning("cannot schedule the retry of {} yet ({}); trying again", message, exc)
                message.options.clear()
                message.options.update(copy.deepcopy(options))
                time.sleep(delay)
                delay = min(delay * 2, REENQUEUE_MAX_S)


class LingeringConsumer(RedisConsumer):
    """dramatiq's Redis consumer, except in when it fetches.

    * **Busy, it lingers**: after a fetch that found messages it lets `linger_s` pass before fetching again.
      Fetching as soon as the last message was handed out takes the queue one or two messages at a time
      under steady load, and each order then runs alone: every one of its Redis commands is a round trip of
      its own. Orders fetched together start together and stay in step (each stage's replies come back in
      one pipeline), so their commands share round trips; a few milliseconds of waiting buys that.
    * **Idle, it waits for work**: dramatiq's consumer fetches every `timeout` (100 ms here) while its queue is
      empty, ten scripts a second per queue for nothing. After a fetch that found nothing, this one blocks
      until the queue has a message: `BLMOVE` of the queue's head onto its own head, a rotation that changes
      nothing and returns as soon as anything (a script, dramatiq, a requeue) pushes to it. It blocks at most
      IDLE_WAIT_S, so the consumer thread still turns (a stop, a heartbeat), and no longer than until the
      earliest retry its thread holds falls due.
    """

    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]  # unannotated upstream
        self.linger_s: float = getattr(broker, "fetch_linger_s", 0.0)
        self._fetched_at = 0.0
        self._idle = False
        self._queue_key = redis_keys.dramatiq_queue(getattr(broker, "partition", 0), queue_name)

    def __next__(self) -> MessageProxy | None:
        fetching = not self.message_cache
        if fetching and self._idle:
            self._wait_for_work()
        elif fetching and self.linger_s:
            wait = self._fetched_at + self.linger_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        message: MessageProxy | None = super().__next__()  # type: ignore[no-untyped-call]  # unannotated upstream
        if fetching:
            self._idle = message is None
            if message is not None:
                self._fetched_at = time.monotonic()
        return message

    def _wait_for_work(self) -> None:
        wait_s = IDLE_WAIT_S
        if (eta_ms := next_delayed_eta_ms(threading.current_thread())) is not None:
            wait_s = min(wait_s, (eta_ms - current_millis()) / 1000)
        if wait_s >= MIN_BLOCK_S:
            try:
                self.broker.client.blmove(self._queue_key, self._queue_key, wait_s, "LEFT", "LEFT")
            except redis.ConnectionError as exc:  # as dramatiq's own fetch reports a lost connection
                raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]  # unannotated upstream


class EngineBroker(RedisBroker):
    """The Redis broker of one partition's execution queue (its namespace: `redis_keys.dramatiq_namespace`), with
    a lingering consumer (see `LingeringConsumer`)."""

    def __init__(self, *args: object, partition: int = 0, fetch_linger_ms: int = 0, **kwargs: object) -> None:
        kwargs.setdefault("namespace", redis_keys.dramatiq_namespace(partition))
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # unannotated upstream
        self.partition = partition
        self.fetch_linger_s = fetch_linger_ms / 1000

    @property
    def consumer_class(self) -> type[LingeringConsumer]:
        return LingeringConsumer


def build_broker(settings: Settings, partition: int = 0, client: redis.Redis | None = None) -> EngineBroker:
    """The broker of `partition`'s execution queue; brokers of several partitions may share one `client` (not on
    a cluster, where each client is bound to its partition's slot)."""
    # TimeLimit, ShutDown and Callbacks are left out on purpose: they track work per worker thread,
    # and our coroutine actors do not run on the thread that picked their message up.
    client = client or sync_redis_client(settings, slot_of=redis_keys.dramatiq_namespace(partition))
    middleware = [
        AgeLimit(),
        DurableRetries(
            replica_count=replica_count(settings, client.connection_pool),
            max_retries=settings.max_attempts - 1,
            min_backoff=settings.retry_min_backoff_ms,
            max_backoff=settings.retry_max_backoff_ms,
        ),
        KeepDelayedMessagesOnReconnect(),
    ]
    return EngineBroker(
        # The factory's client: Sentinel-managed or bound to the partition's cluster slot when the settings say so
        # (dramatiq takes any redis.Redis).
        client=client,
        partition=partition,
        fetch_linger_ms=settings.worker_fetch_linger_ms,
        middleware=middleware,
        heartbeat_timeout=settings.worker_heartbeat_timeout_ms,
        maintenance_chance=settings.worker_maintenance_chance,
    )
