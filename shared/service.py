"""The run-until-signalled shell every asyncio service shares: settings, logging, probes, SIGTERM/SIGINT → stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

from shared.logging import setup_logging
from shared.observability.probes import ServiceProbes, start_probes
from shared.settings import Settings

ServiceMain = Callable[[Settings, asyncio.Event, ServiceProbes], Awaitable[None]]


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
        asyncio.run(entry())
    finally:
        if server is not None:
            server.close()


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, waking at once when the service is asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
