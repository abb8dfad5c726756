import httpx
import pytest

from tests.support.processes import start_engine


@pytest.fixture(scope="package")
def engine(redis_url, database_url, tmp_path_factory):
    """The engine with WIF launching 30 s after the fixture starts, its liquidity doubling every 3 s."""
    engine = start_engine(
        redis_url, database_url, tmp_path_factory.mktemp("sniper-engine-logs"), epoch_in_s=25,
        SIM_LAUNCH_FIRST_S="5", SIM_LAUNCH_INTERVAL_S="600", SIM_LIQUIDITY_STEP_S="3",
    )  # fmt: skip
    try:
        yield engine
    finally:
        engine.stop_all()
        print(engine.logs()[-6000:])


@pytest.fixture
async def http(engine):
    async with httpx.AsyncClient(base_url=engine.api_url, timeout=15) as client:
        yield client
