import httpx
import pytest

from tests.support.processes import Engine, free_port


@pytest.fixture(scope="package")
def engine(redis_url, database_url, tmp_path_factory):
    """Every market-order service as a real process, on the suite's Redis and PostgreSQL."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    engine = Engine(
        env={
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "API_PORT": str(free_port()),
            "SIM_SEED": "e2e",
            "SIM_LATENCY_SCALE": "0.5",
            "SIM_FAILURE_RATE": "0",
            "QUOTE_INTERVAL_MS": "200",
        },
        log_dir=tmp_path_factory.mktemp("engine-logs"),
    )
    try:
        for name in ("execution-worker", "quote-stream", "db-sync", "limit-worker", "api"):
            engine.start(name)
        yield engine
    finally:
        engine.stop_all()
        print(engine.logs()[-6000:])


@pytest.fixture
async def http(engine):
    async with httpx.AsyncClient(base_url=engine.api_url, timeout=15) as client:
        yield client
