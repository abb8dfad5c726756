"""The API alone as a real process (real uvicorn: WebSocket frame limits, proxy headers, its own log),
with whatever settings a test needs, and readers for what it says about itself on /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import Engine, fast_engine

#: Lines an API log must never have: an unhandled exception anywhere, or anything logged as an error.
SERVER_ERROR_MARKS = ("Traceback", " ERROR ", " CRITICAL ", "Exception in ASGI application")


@contextmanager
def api_only(redis_url: str, database_url: str, log_dir: Path, **env: str) -> Iterator[Engine]:
    log_dir.mkdir(parents=True, exist_ok=True)
    engine = fast_engine(redis_url, database_url, log_dir, "api-only", **env)
    try:
        engine.start("api")
        yield engine
    finally:
        engine.stop_all()


def server_errors(engine: Engine) -> list[str]:
    log = engine.processes["api"][0].log()
    return [line for line in log.splitlines() if any(mark in line for mark in SERVER_ERROR_MARKS)]


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on /metrics, keyed by (name, sorted labels)."""
    text = (await http.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def open_websockets(http: httpx.AsyncClient) -> float:
    samples = await scrape(http)
    return sum(value for (name, _), value in samples.items() if name == "engine_websocket_connections")


async def asyncio_tasks(http: httpx.AsyncClient) -> float:
    return (await scrape(http))[("engine_api_asyncio_tasks", ())]
