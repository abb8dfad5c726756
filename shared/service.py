"""The run-until-signalled shell every asyncio service shares: settings, logging, SIGTERM/SIGINT → stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

from shared.logging import setup_logging
from shared.settings import Settings

ServiceMain = Callable[[Settings, asyncio.Event], Awaitable[None]]


def run_service(name: str, main: ServiceMain) -> None:
    """Run `main(settings, stop)` until it returns; SIGTERM or SIGINT sets `stop`."""
    settings = Settings()
    setup_logging(name, settings)

    async def entry() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(settings, stop)

    asyncio.run(entry())


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, waking at once when the service is asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
