"""The runner's own Redis and PostgreSQL, kept running like its services.

An embedded server that dies (kill -9, the OOM killer) is started again after a back-off (0.5 s doubling to
30 s while restarts keep failing) on the same port or socket and the same data dir: every service keeps its
REDIS_URL / DATABASE_URL and reconnects by itself, Redis reloads its AOF, PostgreSQL replays its WAL, so what
was accepted before the crash is still there. Only servers the runner started are watched (a server given
by REDIS_URL / DATABASE_URL is someone else's to run). A paused (SIGSTOPped) server is alive: it is left be.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from contextlib import suppress
from typing import Protocol

from deploy.local.supervisor import Backoff, Output
from shared.service import Stopped, unless_stopped

#: How often a server's process is looked at where its exit cannot be waited for (no pidfd): a waitpid or a
#: read of /proc, nothing sent to the server.
POLL_S = 0.2
RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0


class Restartable(Protocol):
    """What EmbeddedRedis and EmbeddedPostgres (deploy/local/embedded_*.py) offer the watchdog."""

    @property
    def pid(self) -> int | None: ...
    @property
    def where(self) -> str: ...
    def alive(self) -> bool: ...
    def death(self) -> str: ...
    def recover(self) -> str | None: ...  # what to tell the user beyond "restarted"


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def _until_it_may_have_died(server: Restartable, stopping: asyncio.Event) -> None:
    """Return once the server's process may have ended, or on `stopping`. Where Linux gives a pidfd (5.3+),
    its exit wakes this and nothing polls in between; elsewhere, after POLL_S."""
    pid = server.pid
    if pid is None or not hasattr(os, "pidfd_open"):
        await _wait(stopping, POLL_S)
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # gone already (ESRCH), or pidfds refused here: look again after a poll's pause
        await _wait(stopping, POLL_S)
        return
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await unless_stopped(ended, stopping)
    except Stopped:
        pass
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def keep_running(name: str, server: Restartable, stopping: asyncio.Event, out: Output) -> None:
    """Restart `server` whenever it dies, until `stopping` is set. A restart in progress is finished first
    (it runs in a thread), so the runner stops a server it knows about, never one half started."""
    backoff = Backoff(RESTART_MIN_S, RESTART_MAX_S, HEALTHY_AFTER_S)
    up_since = time.monotonic()
    while not stopping.is_set():
        await _until_it_may_have_died(server, stopping)
        if stopping.is_set() or server.alive():
            continue
        died = time.monotonic()
        delay = backoff.delay(died - up_since)
        out.line(name, f"{server.death()}; restarting in {delay:g} s on the same {server.where}")
        await _wait(stopping, delay)
        if stopping.is_set():
            return
        try:
            note = await asyncio.to_thread(server.recover)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the next attempt waits longer
            out.line(name, f"restart failed: {str(exc) or repr(exc)}")  # some say nothing: AssertionError()
            up_since = time.monotonic()
            continue
        up_since = time.monotonic()
        out.line(name, f"restarted: pid {server.pid} on the same {server.where}, {up_since - died:.1f} s after it died")
        if note:
            out.line(name, note)


async def watch(servers: Mapping[str, Restartable], stopping: asyncio.Event, out: Output) -> None:
    """`keep_running` for every server, until `stopping` is set."""
    await asyncio.gather(*(keep_running(name, server, stopping, out) for name, server in servers.items()))
