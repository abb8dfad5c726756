"""Real Redis and PostgreSQL for the whole suite: the configured ones (REDIS_URL, DATABASE_URL), else
embedded servers started under a temporary folder. Each session gets its own scratch database; each
test that asks for `redis` starts from an empty Redis database."""

from __future__ import annotations

import os

import pytest
from redis.asyncio import Redis

from deploy.local.embedded import resolve_servers
from shared.persistence.migrate import upgrade
from shared.settings import Settings
from tests.support.databases import create_scratch_database, drop_database


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
    """An HTTP client for the API of the `engine` fixture of the test's package."""
    import httpx

    async with httpx.AsyncClient(base_url=engine.api_url, timeout=15) as client:
        yield client
