"""Real Redis and PostgreSQL for the whole suite: the configured ones (REDIS_URL, DATABASE_URL), else
embedded servers started under a temporary folder. Each session gets its own scratch database; each
test that asks for `redis` starts from an empty Redis database.

Every test gets the marker of its directory (`SUITE_MARKERS`): `-m unit` runs the fast tests that need no
server, `-m integration` those on real Redis and PostgreSQL, `-m e2e` those that start the services as real
processes. tests/unit/test_test_layout.py fails when a directory of tests is missing from the table."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from redis.asyncio import Redis

from deploy.local.embedded import resolve_servers
from shared.persistence.migrate import upgrade
from shared.settings import Settings
from tests.support.databases import create_scratch_database, drop_database

TESTS_DIR = Path(__file__).parent

#: The marker of each directory under tests/ that holds tests (registered in pyproject.toml).
SUITE_MARKERS = {
    "unit": "unit",  # pure: no server, no process
    "integration": "integration",  # real Redis and PostgreSQL
    "fuzz": "integration",  # both files fuzz the in-process app on the suite's Redis and PostgreSQL
    "e2e": "e2e",  # every service as a real process
    "faults": "e2e",  # services and servers killed under load (test_invariants.py alone needs none)
    "browser": "e2e",  # the dashboard in Chromium against the real services
    "compose": "e2e",  # compose.yaml in Docker
}


def suite_of(path: Path) -> str | None:
    """The directory under tests/ that holds `path` (None outside tests/ or directly in it)."""
    try:
        parts = path.relative_to(TESTS_DIR).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 else None


def pytest_collection_modifyitems(config, items):
    for item in items:
        suite = suite_of(item.path)
        if suite in SUITE_MARKERS:
            item.add_marker(SUITE_MARKERS[suite])


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    with resolve_servers(tmp_path_factory.mktemp("servers")) as found:
        yield found


@pytest.fixture(scope="session")
def redis_url(servers) -> str:
    return servers.redis_url


@pytest.fixture(scope="session")
def database_url(servers) -> str:
    url = create_scratch_database(servers.database_url)
    upgrade(url)
    yield url
    if not os.environ.get("KEEP_TEST_DATABASE"):
        drop_database(url)


@pytest.fixture
async def redis(redis_url):
    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def settings(redis_url, database_url) -> Settings:
    return Settings(
        redis_url=redis_url, database_url=database_url, sim_latency_scale=0, sim_failure_rate=0, sim_seed="test-seed"
    )


@pytest.fixture
async def http(engine):
    """An HTTP client for the API of the `engine` fixture the test sees (its package's, or its module's)."""
    import httpx

    async with httpx.AsyncClient(base_url=engine.api_url, timeout=15) as client:
        yield client
