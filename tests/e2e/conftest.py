import pytest

from tests.support.processes import running_engine


@pytest.fixture(scope="package")
def engine(redis_url, database_url, tmp_path_factory):
    """Every service as a real process, on the suite's Redis and PostgreSQL."""
    with running_engine(redis_url, database_url, tmp_path_factory.mktemp("engine-logs")) as engine:
        yield engine
