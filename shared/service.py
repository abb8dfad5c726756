"""The run-until-signalled shell every asyncio service shares: settings, logging, probes, SIGTERM/SIGINT → stop;
and the loop its background tasks run in (`keep_running`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

from shared.logging import setup_logging
from shared.observability.probes import Heartbeat, ServiceProbes, start_probes
from shared.outage_log import OutageLog
from shared.settings import Settings

_Result = TypeVar("_Result")
ServiceMain = Callable[[Settings, asyncio.Event, ServiceProbes], Awaitable[None]]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop (installed with uvicorn[standard], as the API runs on it), or asyncio's without it.

    uvloop does the socket reads and writes and the callback scheduling in C: under load, the pure-Python
    selector loop's socket writes were a large share of the execution worker's loop thread, and idle, each
    wake-up of a service (a tick, a blocking read timing out) costs less."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a slimmer install still works, only slower
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_service(name: str, main: ServiceMain) -> None:
    """Run `main(settings, stop, probes)` until it returns; SIGTERM or SIGINT sets `stop`.

    `/metrics` and `/health` are served (see shared/observability/probes.py) before `main` starts, so a
    service still waiting for Redis already answers 503 "starting" instead of refusing the connection."""
    settings = Settings()
    setup_logging(name, settings)
    probes = ServiceProbes.for_service(name, settings)
    server = start_probes(name, settings, probes)

    async def entry() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(settings, stop, probes)

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(entry())
    finally:
        if server is not None:
            server.close()


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, waking at once when the service is asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Stopped(Exception):
    """What `unless_stopped` raises when the service was asked to stop first."""


async def unless_stopped(awaitable: Awaitable[_Result], stop: asyncio.Event | None) -> _Result:
    """`awaitable`'s result, or Stopped as soon as `stop` is set (the awaitable is then cancelled): a blocking
    read may wait long for work without making a stop wait for it. Cancelling a redis-py command drops its
    connection, which only ever happens here on a stop."""
    task = asyncio.ensure_future(awaitable)
    if stop is None:
        return await task
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stopping.cancel()
    if task not in done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise Stopped
    return task.result()


async def keep_running(
    step: Callable[[], Awaitable[None]],
    *,
    alive: Heartbeat,
    stop: asyncio.Event | None,
    outage: OutageLog | None,
    catch: tuple[type[Exception], ...] = (RedisError, OSError),
    rest_s: float = 0.0,
    period_s: float = 0.0,
    back_off_s: float = 0.0,
) -> None:
    """Run `step` round after round until `stop` is set (without one: until cancelled).

    A round that returns marks `alive` and ends an outage in `outage`; one that raises an error of `catch`
    fails `alive` ("Redis: <error>") and is told to `outage` (once, then reminders), and the loop carries on;
    one that raises Stopped ends it.
    After a round the loop pauses at least `rest_s`, long enough for rounds to start at most every
    `period_s`, and after a failed round at least `back_off_s`; `stop` cuts a pause short."""
    while stop is None or not stop.is_set():
        started = time.monotonic()
        failed = False
        try:
            await step()
            alive.ok()
            if outage is not None:
                outage.ok()
        except Stopped:  # a step that waits `unless_stopped` was cut short
            return
        except catch as exc:
            failed = True
            alive.failed(f"Redis: {exc!r}")
            if outage is not None:
                outage.failed(exc)
        wait_s = max(rest_s, period_s - (time.monotonic() - started), back_off_s if failed else 0.0)
        if wait_s <= 0:
            continue
        if stop is None:
            await asyncio.sleep(wait_s)
        else:
            await pause(stop, wait_s)
