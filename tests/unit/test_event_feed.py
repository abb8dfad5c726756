"""The event hub's fan-out to user sockets, its batched reads and its shutdown, with a fake Redis."""

from __future__ import annotations

import asyncio

import pytest

from shared import event_feed
from shared.event_feed import EventHub


class FakeStream:
    """Enough of redis.asyncio.Redis for EventHub.run: XREAD answers from a list, blocking while it is empty."""

    def __init__(self, *, swallow_cancels: int = 0) -> None:
        self.entries: list[tuple[bytes, dict[bytes, bytes]]] = []
        self.reads = 0
        self.swallow_cancels = swallow_cancels
        self._arrived = asyncio.Event()

    def add(self, order: str, user: str, event: bytes) -> None:
        self.entries.append(
            (f"{len(self.entries) + 1}-0".encode(), {b"o": order.encode(), b"u": user.encode(), b"e": event})
        )
        self._arrived.set()

    async def xrevrange(self, stream, count):
        return self.entries[-1:]

    async def xread(self, streams, count, block):
        self.reads += 1
        ((stream, last),) = streams.items()
        while True:
            fresh = [entry for entry in self.entries if last == "$" or _seq(entry[0]) > _seq(last)]
            if fresh:
                return [(stream.encode(), fresh[:count])]
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), block / 1000)
            except TimeoutError:
                return []
            except asyncio.CancelledError:
                if self.swallow_cancels:  # as a redis-py read on Python 3.11 sometimes does
                    self.swallow_cancels -= 1
                    return []
                raise


def _seq(entry_id) -> int:
    return int((entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-")[0])


async def until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


@pytest.fixture
async def hub():
    fake = FakeStream()
    hub = EventHub(fake)
    reader = asyncio.create_task(hub.run())
    await asyncio.sleep(0.01)  # the reader is waiting on its first XREAD ("$": only new entries)
    yield hub, fake
    await hub.stop(reader)


async def test_a_user_listener_gets_its_owners_events_in_order_and_no_one_elses(hub):
    hub, fake = hub
    got: list[bytes] = []

    async def send(event: bytes) -> None:
        got.append(event)

    with hub.subscribe_user("alice", send) as listener:
        for i in range(20):
            fake.add(f"order-{i % 3}", "alice" if i % 2 == 0 else "bob", b"%d" % i)
        await until(lambda: len(got) == 10)
        await until(lambda: not listener.sending)  # nothing left to send: no task is kept for it
    assert got == [b"%d" % i for i in range(0, 20, 2)]
    assert hub.delivered == 10


async def test_a_slow_socket_delays_no_other_and_loses_nothing(hub):
    hub, fake = hub
    release = asyncio.Event()
    slow: list[bytes] = []
    fast: list[bytes] = []

    async def send_slow(event: bytes) -> None:
        await release.wait()  # a client that does not read: the server's write buffer is full
        slow.append(event)

    async def send_fast(event: bytes) -> None:
        fast.append(event)

    with hub.subscribe_user("u", send_slow), hub.subscribe_user("u", send_fast):
        for i in range(5):
            fake.add("o", "u", b"%d" % i)
        await until(lambda: len(fast) == 5)
        assert slow == []
        release.set()
        await until(lambda: len(slow) == 5)
    assert slow == fast == [b"%d" % i for i in range(5)]


async def test_a_failed_send_ends_the_listener_and_leaving_unsubscribes_it(hub):
    hub, fake = hub
    calls = 0

    async def broken(event: bytes) -> None:
        nonlocal calls
        calls += 1
        raise OSError("client gone")

    with hub.subscribe_user("gone", broken) as listener:
        fake.add("o", "gone", b"1")
        await until(lambda: calls == 1 and not listener.sending)
        fake.add("o", "gone", b"2")
        await asyncio.sleep(0.05)
        assert calls == 1  # closed: later events are not sent to it
    assert "gone" not in hub._by_user


async def test_leaving_mid_send_cancels_the_sender(hub):
    hub, fake = hub
    started = asyncio.Event()

    async def stuck(event: bytes) -> None:
        started.set()
        await asyncio.sleep(3600)

    with hub.subscribe_user("stuck", stuck) as listener:
        fake.add("o", "stuck", b"1")
        await started.wait()
        task = listener._task
    await until(lambda: task.done())
    assert task.cancelled() and not listener.sending


async def test_events_that_arrive_together_come_in_one_read(monkeypatch, hub):
    hub, fake = hub
    monkeypatch.setattr(event_feed, "READ_LINGER_S", 0.2)
    got: list[bytes] = []

    async def send(event: bytes) -> None:
        got.append(event)

    with hub.subscribe_user("u", send):
        fake.add("o", "u", b"first")
        await until(lambda: got == [b"first"])  # the first event after a quiet spell is handed on at once
        reads = fake.reads
        for i in range(10):  # arrive while the reader lingers
            fake.add("o", "u", b"%d" % i)
        await until(lambda: len(got) == 11)
    assert fake.reads - reads == 1


async def test_stop_ends_the_reader_even_when_a_cancel_is_swallowed():
    fake = FakeStream(swallow_cancels=2)
    hub = EventHub(fake)
    reader = asyncio.create_task(hub.run())
    await asyncio.sleep(0.01)
    await asyncio.wait_for(hub.stop(reader), 5)
    assert reader.done()
