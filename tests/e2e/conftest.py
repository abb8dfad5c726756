import httpx
import pytest

from tests.support.processes import start_engine


@pytest.fixture(scope="package")
def engine(redis_url, database_url, tmp_path_factory):
    """Every service as a real process, on the suite's Redis and PostgreSQL."""
    engine = start_engine(redis_url, database_url, tmp_path_factory.mktemp("engine-logs"))
    try:
        yield engine
    finally:
        engine.stop_all()
        print(engine.logs()[-6000:])


@pytest.fixture
async def http(engine):
    async with httpx.AsyncClient(base_url=engine.api_url, timeout=15) as client:
        yield client
