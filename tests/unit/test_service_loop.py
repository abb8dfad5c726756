"""keep_running, the loop every service's background task runs in: one step per round, the heartbeat marked,
an outage told once and its end once, a pause between rounds, until stop (no server: the steps are fakes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from loguru import logger
from redis.exceptions import ConnectionError as RedisConnectionError

from shared import service
from shared.observability.probes import Heartbeat
from shared.outage_log import OutageLog
from shared.service import keep_running


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="INFO")
    yield lines
    logger.remove(sink)


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every pause keep_running asks for, in seconds, taken at once."""
    asked: list[float] = []

    async def record(_stop: asyncio.Event, seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(service, "pause", record)
    return asked


def steps(*outcomes: Exception | None, stop: asyncio.Event) -> tuple[Callable[[], Awaitable[None]], list[int]]:
    """A step that raises or returns per `outcomes`, then sets `stop`; and the list of rounds it ran."""
    ran: list[int] = []

    async def step() -> None:
        ran.append(len(ran))
        if len(ran) >= len(outcomes):
            stop.set()
        outcome = outcomes[len(ran) - 1]
        if outcome is not None:
            raise outcome

    return step, ran


async def test_a_loop_asked_to_stop_runs_no_round() -> None:
    stop = asyncio.Event()
    stop.set()
    step, ran = steps(None, stop=stop)
    await keep_running(step, alive=Heartbeat("loop", 10), stop=stop, outage=None)
    assert ran == []


async def test_rounds_run_until_stop_is_set(pauses: list[float]) -> None:
    stop = asyncio.Event()
    step, ran = steps(None, None, None, stop=stop)
    await keep_running(step, alive=Heartbeat("loop", 10), stop=stop, outage=None)
    assert ran == [0, 1, 2]
    assert pauses == []  # no rest asked for: the next round at once


async def test_a_good_round_marks_the_heartbeat_and_a_failed_one_fails_it() -> None:
    stop = asyncio.Event()
    alive = Heartbeat("loop", 10)
    seen: list[tuple[bool, str]] = []

    async def step() -> None:
        seen.append(alive.verdict(time.monotonic()))
        if len(seen) == 2:
            raise OSError("network unreachable")
        if len(seen) == 3:
            stop.set()

    await keep_running(step, alive=alive, stop=stop, outage=None)
    assert seen == [
        (False, "starting"),
        (True, "ok"),
        (False, "failing: Redis: OSError('network unreachable')"),
    ]
    assert alive.verdict(time.monotonic()) == (True, "ok")


async def test_repeated_failures_log_one_outage_line_and_one_recovery_line(
    log_lines: list[str], pauses: list[float]
) -> None:
    stop = asyncio.Event()
    failures = [RedisConnectionError("Error 111 connecting"), OSError("network unreachable")] * 3
    step, ran = steps(*failures, None, stop=stop)
    outage = OutageLog("tick loop lost Redis", clock=lambda: 100.0)
    await keep_running(step, alive=Heartbeat("loop", 10), stop=stop, outage=outage, back_off_s=0.5)
    assert len(ran) == 7
    assert log_lines == [
        "tick loop lost Redis (Error 111 connecting); retrying",
        "tick loop lost Redis: back after 0.0 s, 6 failed attempts",
    ]


async def test_a_failed_round_backs_off_and_a_good_one_does_not(pauses: list[float]) -> None:
    stop = asyncio.Event()
    step, _ = steps(OSError("refused"), None, OSError("refused"), None, stop=stop)
    await keep_running(step, alive=Heartbeat("loop", 10), stop=stop, outage=None, back_off_s=0.5)
    assert pauses == [0.5, 0.5]


async def test_a_resting_loop_rests_after_every_round_and_longer_after_a_failure(pauses: list[float]) -> None:
    stop = asyncio.Event()
    step, _ = steps(None, OSError("refused"), None, stop=stop)
    await keep_running(step, alive=Heartbeat("loop", 10), stop=stop, outage=None, rest_s=0.2, back_off_s=0.5)
    assert pauses == [0.2, 0.5, 0.2]


async def test_a_periodic_loop_waits_only_what_is_left_of_its_period(pauses: list[float]) -> None:
    stop = asyncio.Event()

    async def slow_then_slower() -> None:
        await asyncio.sleep(0.02 if not pauses else 0.3)
        if pauses:
            stop.set()

    await keep_running(slow_then_slower, alive=Heartbeat("loop", 10), stop=stop, outage=None, period_s=0.25)
    assert len(pauses) == 1  # the round longer than its period is followed by none
    assert 0.0 < pauses[0] <= 0.23


async def test_stop_cuts_a_pause_short() -> None:
    stop = asyncio.Event()
    step, ran = steps(None, stop=stop)
    started = time.monotonic()
    await keep_running(step, alive=Heartbeat("loop", 10), stop=stop, outage=None, rest_s=60)
    assert ran == [0]
    assert time.monotonic() - started < 5


async def test_an_error_it_was_not_asked_to_catch_ends_the_loop() -> None:
    stop = asyncio.Event()
    step, ran = steps(None, ValueError("a bug"), None, stop=stop)
    with pytest.raises(ValueError, match="a bug"):
        await keep_running(step, alive=Heartbeat("loop", 10), stop=stop, outage=None)
    assert ran == [0, 1]


async def test_without_stop_it_runs_until_cancelled() -> None:
    alive = Heartbeat("loop", 10)
    rounds = 0

    async def step() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 3:
            raise RuntimeError("anything it is told to catch")

    task = asyncio.create_task(
        keep_running(step, alive=alive, stop=None, outage=None, catch=(Exception,), rest_s=0.001)
    )
    while rounds < 5:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert alive.verdict(time.monotonic()) == (True, "ok")
