"""Live order events for many listeners from one Redis reader, and the gapless replay-then-live hand-over.

`EventHub` tails the global event stream once per process and hands each entry to the subscribers of
its order and of its owner. `follow_order` replays what an order already has and then goes live:
it subscribes *before* reading the backlog and orders everything by `seq`, so an event that lands
during the hand-over is seen once, never twice and never not at all.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from uuid import UUID

import orjson
from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import redis_keys
from shared.domain.lifecycle import is_terminal
from shared.store.order_store import OrderStore

#: How long one XREAD waits for new entries before looping (lets the reader notice shutdown).
READ_BLOCK_MS = 1000
#: A follower that hears nothing live for this long re-reads the order's log, in case the reader
#: missed the entry (e.g. it was trimmed while the reader was reconnecting).
QUIET_RECHECK_S = 5.0
READ_BATCH = 500


class EventHub:
    def __init__(self, redis: Redis, *, stream: str = redis_keys.EVENTS_STREAM) -> None:
        self.redis = redis
        self.stream = stream
        self._by_order: dict[str, set[asyncio.Queue[bytes]]] = defaultdict(set)
        self._by_user: dict[str, set[asyncio.Queue[bytes]]] = defaultdict(set)
        self.delivered = 0

    async def run(self) -> None:
        last_id = "$"
        while True:
            try:
                batches = await self.redis.xread({self.stream: last_id}, count=READ_BATCH, block=READ_BLOCK_MS)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                logger.warning("event reader lost Redis ({}); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for _stream, entries in batches:
                for entry_id, fields in entries:
                    last_id = entry_id
                    self._dispatch(fields)

    def _dispatch(self, fields: dict[bytes, bytes]) -> None:
        event = fields.get(b"e")
        if event is None:
            return
        for queue in self._by_order.get(fields.get(b"o", b"").decode(), ()):
            queue.put_nowait(event)
            self.delivered += 1
        user = fields.get(b"u", b"").decode()
        if user:
            for queue in self._by_user.get(user, ()):
                queue.put_nowait(event)
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

    def subscribe_user(self, user_id: str) -> AbstractContextManager[asyncio.Queue[bytes]]:
        return self._subscribe(self._by_user, user_id)


Send = Callable[[bytes], Awaitable[None]]


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
                raw = await asyncio.wait_for(live.get(), QUIET_RECHECK_S)
                seq = orjson.loads(raw)["seq"]
            except TimeoutError:
                raw, seq = None, None
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
