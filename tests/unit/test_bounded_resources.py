"""The pure parts of the API's resource bounds: shared probe results, the Redis memory rule, statement
timeouts, and the /ws?userId= outbox cap (with a client that never reads)."""

from __future__ import annotations

import asyncio

import pytest

from shared.event_feed import UserListener
from shared.persistence.timeouts import statement_timeout
from shared.redis_memory import MemoryReading, reading_from_info
from shared.shared_result import SharedResult


async def test_concurrent_callers_share_one_computation_and_reuse_it_for_the_period():
    now = [0.0]
    started = asyncio.Event()
    release = asyncio.Event()

    async def compute() -> int:
        started.set()
        await release.wait()
        return shared.computations

    shared = SharedResult(compute, ttl_s=1.0, clock=lambda: now[0])
    callers = [asyncio.create_task(shared.get()) for _ in range(100)]
    await started.wait()
    release.set()
    assert await asyncio.gather(*callers) == [1] * 100
    assert await shared.get() == 1 and shared.computations == 1  # still fresh
    now[0] = 1.5
    assert await shared.get() == 2 and shared.computations == 2


async def test_a_caller_that_gives_up_does_not_cancel_the_others_computation():
    release = asyncio.Event()

    async def compute() -> str:
        await release.wait()
        return "ok"

    shared = SharedResult(compute, ttl_s=0)
    impatient, patient = asyncio.create_task(shared.get()), asyncio.create_task(shared.get())
    await asyncio.sleep(0)
    impatient.cancel()
    release.set()
    assert await patient == "ok"


async def test_a_failed_computation_is_not_kept():
    calls = []

    async def compute() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("down")
        return "up"

    shared = SharedResult(compute, ttl_s=60)
    with pytest.raises(OSError):
        await shared.get()
    assert await shared.get() == "up"


def test_redis_memory_is_high_over_the_fraction_of_maxmemory_and_never_without_one():
    assert reading_from_info({"used_memory": 950, "maxmemory": 1000}).high(0.9)
    assert not reading_from_info({"used_memory": 850, "maxmemory": 1000}).high(0.9)
    assert not MemoryReading(used=10**9, maxmemory=0).high(0.9)  # no maxmemory: unlimited, the check is off
    assert not MemoryReading(used=999, maxmemory=1000).high(0)  # the setting at 0 turns it off
    assert MemoryReading(used=500, maxmemory=1000).fraction == 0.5 and MemoryReading(1, 0).fraction is None


def test_statement_timeout_goes_in_the_connection_options():
    assert statement_timeout(5000) == {"options": "-c statement_timeout=5000"}
    assert statement_timeout(0) == {}


async def test_a_user_listener_that_falls_behind_by_more_than_its_cap_gives_up_and_says_so():
    never = asyncio.Event()  # a client that does not read: every send waits forever
    sent: list[bytes] = []

    async def send(event: bytes) -> None:
        sent.append(event)
        await never.wait()

    overflowed = []
    table: dict[str, list[UserListener]] = {}
    listener = UserListener(send, table, "u", max_pending=3, on_overflow=lambda: overflowed.append(True))
    table["u"] = [listener]
    with listener:
        for i in range(3):
            listener.push(b"%d" % i)
        await asyncio.sleep(0)
        assert sent == [b"0"] and not overflowed  # three pending (one in flight): at the cap, not over
        listener.push(b"3")
        assert overflowed == [True]
        await asyncio.sleep(0)
        assert not listener.sending  # its sender stopped waiting on the client
        listener.push(b"4")
        assert overflowed == [True] and sent == [b"0"]  # told once; nothing more is queued
    assert table == {}


async def test_a_user_listener_that_keeps_up_is_never_cut_off():
    sent: list[bytes] = []

    async def send(event: bytes) -> None:
        sent.append(event)
        await asyncio.sleep(0)

    table: dict[str, list[UserListener]] = {}
    listener = UserListener(send, table, "u", max_pending=2, on_overflow=lambda: sent.append(b"overflow"))
    table["u"] = [listener]
    with listener:
        for i in range(50):
            listener.push(b"%d" % i)
            await asyncio.sleep(0.001)
        while listener.sending:
            await asyncio.sleep(0.001)
    assert sent == [b"%d" % i for i in range(50)]


async def test_past_its_budget_a_shared_result_answers_with_the_last_value_and_refills_with_time():
    now = [0.0]

    async def compute() -> float:
        return now[0]

    shared = SharedResult(compute, ttl_s=0, clock=lambda: now[0], max_per_s=5)
    assert [await shared.get() for _ in range(20)] == [0.0] * 20
    assert shared.computations == 6  # the first, then a burst of five
    now[0] = 0.2  # one more computation earned
    assert [await shared.get() for _ in range(3)] == [0.2, 0.2, 0.2] and shared.computations == 7
    now[0] = 100.0  # a long quiet: fresh again, a burst of at most five
    assert await shared.get() == 100.0
    assert shared.computations == 8


async def test_past_its_budget_with_only_failures_so_far_a_shared_result_computes_again_never_answers_none():
    calls = []

    async def compute() -> str:
        calls.append(1)
        if len(calls) <= 8:
            raise OSError("down")
        return "up"

    shared = SharedResult(compute, ttl_s=0, clock=lambda: 0.0, max_per_s=2)
    for _ in range(8):  # far past a budget of two: each caller still gets the error, not a missing value
        with pytest.raises(OSError):
            await shared.get()
    assert await shared.get() == "up"
