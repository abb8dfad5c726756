"""uvicorn's server, woken by its signals instead of ten times a second.

uvicorn's `Server.main_loop` sleeps 0.1 s between calls of `on_tick`, which refreshes the `Date` header once
a second (every tenth call) and notices `should_exit`: ten wake-ups a second, most of an idle API's CPU.
`EngineServer` calls `on_tick` once a second (with the counter stepped by ten, so each call refreshes the
header as uvicorn's tenth would) and a signal (`handle_exit`) wakes it at once, so stopping is as quick as
before. Both methods are uvicorn's internals, fenced with the protocol's in tests/unit/test_uvicorn_internals.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE

#: How often the server looks after itself (the `Date` header, `should_exit` set by other means).
TICK_S = 1.0
#: `on_tick` refreshes the `Date` header when its counter is a multiple of this (uvicorn's ten ticks a second).
TICKS_PER_HEADER_REFRESH = 10


class EngineServer(uvicorn.Server):
    _woken: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._woken, self._loop = asyncio.Event(), asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + TICKS_PER_HEADER_REFRESH) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), TICK_S)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._woken is not None:
            self._loop.call_soon_threadsafe(self._woken.set)


def serve(config: uvicorn.Config) -> None:
    """What `uvicorn.run` does for one process without reload, with `EngineServer`: exit 3 if it never started."""
    server = EngineServer(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
