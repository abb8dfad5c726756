import pytest

from tests.support.processes import running_engine


@pytest.fixture(scope="package")
def engine(redis_url, database_url, tmp_path_factory):
    """The engine with WIF launching 30 s after the fixture starts, its liquidity doubling every 3 s."""
    log_dir = tmp_path_factory.mktemp("sniper-engine-logs")
    launches = {"SIM_LAUNCH_FIRST_S": "5", "SIM_LAUNCH_INTERVAL_S": "600", "SIM_LIQUIDITY_STEP_S": "3"}
    with running_engine(redis_url, database_url, log_dir, epoch_in_s=25, **launches) as engine:
        yield engine
