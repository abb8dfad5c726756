"""Live order events for many listeners from one Redis reader, and the gapless replay-then-live hand-over.

`EventHub` tails the global event stream once per process and hands each entry to the subscribers of
its order and of its owner. `follow_order` replays what an order already has and then goes live:
it subscribes *before* reading the backlog and orders everything by `seq`, so an event that lands
during the hand-over is seen once, never twice and never not at all.

An owner's subscriber (`/ws?userId=`, thousands of them per process) is a `UserListener`: the reader
hands it each event and it sends them, in order, from a task that exists only while it has something to
send, so a quiet socket costs no task and no queue, and a slow one delays nobody else. Nor does it fill the
API's memory: a listener more than `max_pending` events behind gives up (`on_overflow`) and its socket is
closed.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import cast
from uuid import UUID

import orjson
from loguru import logger
from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.lifecycle import is_terminal
from shared.domain.partitions import all_partitions
from shared.outage_log import OutageLog
from shared.redis_client import REDIS_UNAVAILABLE
from shared.redis_cluster import ClusterRedis
from shared.redis_replicas import barrier
from shared.store.order_store import OrderStore

#: How long one XREAD waits for new entries before looping (lets the reader notice shutdown).
READ_BLOCK_MS = 1000
#: A follower that hears nothing live for this long re-reads the order's log, in case the reader
#: missed the entry (e.g. it was trimmed while the reader was reconnecting).
QUIET_RECHECK_S = 5.0
READ_BATCH = 500
#: How long a cancelled reader may take to end before it is cancelled again.
STOP_RETRY_S = 0.05
#: After a read that did not fill a batch, the reader waits this long before reading again, so that the
#: events arriving meanwhile come in one XREAD instead of one each (every round trip costs the API and
#: Redis CPU, and under load events arrive several per order). It delays only an event that lands
#: during the wait, by at most this much; the first event after a quiet spell is handed on at once.
READ_LINGER_S = 0.005

Send = Callable[[bytes], Awaitable[None]]
#: XREAD's reply as this client gets it (RESP2, not decoded): [[stream, [(entry id, {field: value}), ...]], ...].
#: redis-py types every protocol's form of it at once.
_XReadReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


class UserListener:
    """The events of one owner for one socket, sent in arrival order by `send`.

    `push` never waits: the first event of a burst starts a task that sends until nothing is left, then
    ends. A send that fails (the client went away) ends it too, and what was still waiting is dropped:
    there is no one left to send it to, and the socket's handler hears the disconnect and unsubscribes.
    A client that does not read makes `send` wait: once more than `max_pending` (0 = no cap) events wait
    for it, the listener drops them, stops, and calls `on_overflow` (the handler closes the socket).
    """

    __slots__ = ("_send", "_outbox", "_task", "_closed", "_table", "_key", "_pending", "_max_pending", "_on_overflow")

    def __init__(
        self,
        send: Send,
        table: dict[str, list[UserListener]],
        key: str,
        max_pending: int = 0,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self._send = send
        self._outbox: list[bytes] | None = None  # None: no sender task is running
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._table = table
        self._key = key
        self._pending = 0  # pushed and not yet sent, the batch being sent included
        self._max_pending = max_pending
        self._on_overflow = on_overflow

    def push(self, event: bytes) -> None:
        if self._closed:
            return
        self._pending += 1
        if self._max_pending and self._pending > self._max_pending:
            self._overflow()
            return
        if self._outbox is not None:
            self._outbox.append(event)
            return
        self._outbox = [event]
        self._task = asyncio.get_running_loop().create_task(self._drain())

    @property
    def sending(self) -> bool:
        return self._task is not None

    def _overflow(self) -> None:
        self._closed = True
        self._outbox = None
        if self._task is not None:
            self._task.cancel()  # it waits on a client that does not read
        if self._on_overflow is not None:
            self._on_overflow()

    async def _drain(self) -> None:
        try:
            while self._outbox:
                batch, self._outbox = self._outbox, []
                for event in batch:
                    await self._send(event)
                    self._pending -= 1
        except Exception:  # the socket is closing or gone: its handler will unsubscribe
            self._closed = True
        finally:
            self._outbox, self._task = None, None

    def __enter__(self) -> UserListener:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._closed = True
        listeners = self._table.get(self._key)
        if listeners is not None:
            listeners.remove(self)
            if not listeners:
                del self._table[self._key]
        if self._task is not None:
            self._task.cancel()


class EventHub:
    """Tails every partition's event stream (shared/domain/partitions.py) from where it joined: in one XREAD of
    them all on a single Redis, in one XREAD per stream on a cluster (a command names keys of one slot)."""

    def __init__(self, redis: Redis, *, partitions: int = 1) -> None:
        self.redis = redis
        self.streams = [redis_keys.events_stream(partition) for partition in all_partitions(partitions)]
        self._by_order: dict[str, set[asyncio.Queue[bytes]]] = defaultdict(set)
        self._by_user: dict[str, list[UserListener]] = {}
        self.delivered = 0
        self._stopping = False

    async def run(self) -> None:
        if isinstance(self.redis, ClusterRedis):
            await asyncio.gather(*(self._tail([stream]) for stream in self.streams))
        else:
            await self._tail(self.streams)

    async def _tail(self, streams: list[str]) -> None:
        last_ids: dict[str | bytes, bytes | str] | None = None
        outage = OutageLog("event reader lost Redis")
        while not self._stopping:
            try:
                if last_ids is None:
                    last_ids = await self._ends(streams)
                reply = await self.redis.xread(last_ids, count=READ_BATCH, block=READ_BLOCK_MS)  # type: ignore[arg-type]  # redis-py: invariant dict types
                batches = cast(_XReadReply, reply)
                if batches:  # hand on only what a failover cannot take back (shared/redis_replicas.py)
                    # On a cluster each stream is tailed alone: its own primary's replicas are the ones to wait for.
                    await barrier(self.redis, streams[0] if len(streams) == 1 else None)
            except REDIS_UNAVAILABLE as exc:  # reconnects (through the sentinels, if any) on the next read
                outage.failed(exc)
                await asyncio.sleep(0.5)
                continue
            outage.ok()
            read = 0
            for stream, entries in batches:
                read += len(entries)
                for _entry_id, fields in entries:
                    self._dispatch(fields)
                if entries:
                    last_ids[stream.decode()] = entries[-1][0]
            if read and read < READ_BATCH:
                await asyncio.sleep(READ_LINGER_S)

    async def _ends(self, streams: list[str]) -> dict[str | bytes, bytes | str]:
        """Where each stream ends now: the reader starts there. Not `$`, which XREAD takes afresh at every call:
        a stream with nothing new in one read would skip whatever reached it before the next."""
        ends: dict[str | bytes, bytes | str] = {}
        for stream in streams:
            last = await self.redis.xrevrange(stream, count=1)
            ends[stream] = (last[0][0] if last else None) or b"0-0"  # an empty stream (or none yet): from its start
        return ends

    async def stop(self, reader: asyncio.Task[None]) -> None:
        """End `reader` (the task running `run`). Cancelled again until it ends: on Python 3.11 a cancel that
        lands just as a redis-py read completes can be swallowed, and the loop would read on; it also stops
        at its next turn whatever happens to the cancel."""
        self._stopping = True
        while not reader.done():
            reader.cancel()
            await asyncio.wait({reader}, timeout=STOP_RETRY_S)
        if not reader.cancelled() and reader.exception() is not None:
            logger.opt(exception=reader.exception()).warning("event reader ended with an error")

    def _dispatch(self, fields: dict[bytes, bytes]) -> None:
        event = fields.get(b"e")
        if event is None:
            return
        if self._by_order:
            for queue in self._by_order.get(fields.get(b"o", b"").decode(), ()):
                queue.put_nowait(event)
                self.delivered += 1
        user = fields.get(b"u")
        if user and self._by_user:
            for listener in self._by_user.get(user.decode(), ()):
                listener.push(event)
                self.delivered += 1

    @contextmanager
    def _subscribe(self, table: dict[str, set[asyncio.Queue[bytes]]], key: str) -> Iterator[asyncio.Queue[bytes]]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        table[key].add(queue)
        try:
            yield queue
        finally:
            table[key].discard(queue)
            if not table[key]:
                del table[key]

    def subscribe_order(self, order_id: UUID) -> AbstractContextManager[asyncio.Queue[bytes]]:
        return self._subscribe(self._by_order, str(order_id))

    def subscribe_user(
        self, user_id: str, send: Send, *, max_pending: int = 0, on_overflow: Callable[[], None] | None = None
    ) -> UserListener:
        """Hand every event of `user_id`'s orders to `send` until the returned listener's block ends, or until
        more than `max_pending` wait (0 = no cap): then `on_overflow` is called."""
        listener = UserListener(send, self._by_user, user_id, max_pending, on_overflow)
        self._by_user.setdefault(user_id, []).append(listener)
        return listener


async def follow_order(store: OrderStore, hub: EventHub, order_id: UUID, after: int, send: Send) -> bool:
    """Send every event of the order with seq > after, then live ones until a terminal event.

    Returns False when Redis does not know the order (the caller may look in history instead).
    """
    with hub.subscribe_order(order_id) as live:
        state = await store.load(order_id)
        if state is None:
            return False
        last = after
        for raw in await store.events(order_id, after):
            last, done = await _forward(raw, last, send)
            if done:
                return True
        if state.terminal and last >= state.seq:
            return True
        while True:
            try:
                async with asyncio.timeout(QUIET_RECHECK_S):  # not wait_for: that wraps each get in a task
                    raw = await live.get()
                seq = orjson.loads(raw)["seq"]
            except TimeoutError:
                seq = None  # nothing heard: `raw` is read below only when `seq` is set
            if seq is not None and seq <= last:
                continue
            if seq is None or seq > last + 1:  # nothing heard, or the reader skipped ahead: use the log
                for missing in await store.events(order_id, last):
                    last, done = await _forward(missing, last, send)
                    if done:
                        return True
                continue
            last, done = await _forward(raw, last, send)
            if done:
                return True


async def _forward(raw: bytes, last: int, send: Send) -> tuple[int, bool]:
    message = orjson.loads(raw)
    if message["seq"] <= last:
        return last, False
    await send(raw)
    return message["seq"], is_terminal(message["status"])
