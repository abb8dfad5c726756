"""The API's event reader on several partitions' streams, on real Redis: an event is handed on whichever
stream it lands in, including one that had nothing new at the reader's previous read."""

from __future__ import annotations

import asyncio

from shared import event_feed, redis_keys
from shared.event_feed import EventHub

PARTITIONS = 3


async def test_events_of_every_partition_reach_their_listener(redis, monkeypatch):
    monkeypatch.setattr(event_feed, "READ_LINGER_S", 0.2)  # a wide gap between two reads
    await redis.xadd(redis_keys.events_stream(1), {"o": "before", "u": "u", "e": b"old"})  # before: not handed on
    hub = EventHub(redis, partitions=PARTITIONS)
    reader = asyncio.create_task(hub.run())
    got: list[bytes] = []

    async def send(event: bytes) -> None:
        got.append(event)

    try:
        with hub.subscribe_user("u", send):
            await asyncio.sleep(0.1)  # the reader has found where each stream ends, and waits
            await redis.xadd(redis_keys.events_stream(0), {"o": "a", "u": "u", "e": b"first"})
            await asyncio.sleep(0.05)  # read: the reader now waits before its next read
            for partition in (1, 2):  # streams that had nothing new at that read
                await redis.xadd(redis_keys.events_stream(partition), {"o": "b", "u": "u", "e": b"p%d" % partition})
            for _ in range(100):
                if len(got) >= 3:
                    break
                await asyncio.sleep(0.02)
        assert got == [b"first", b"p1", b"p2"]
    finally:
        await hub.stop(reader)
