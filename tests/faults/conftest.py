"""The fault suite's own Redis and PostgreSQL: it kills, freezes and restarts them, so it never touches
servers it did not start (REDIS_URL / DATABASE_URL are ignored here on purpose)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from deploy.local.embedded_postgres import EmbeddedPostgres
from deploy.local.embedded_redis import EmbeddedRedis
from shared.persistence.migrate import upgrade
from tests.faults import report


@dataclass
class FaultServers:
    redis: EmbeddedRedis
    postgres: EmbeddedPostgres

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def database_url(self) -> str:
        return self.postgres.url


@pytest.fixture(scope="session")
def fault_servers(tmp_path_factory) -> Iterator[FaultServers]:
    """Redis with AOF everysec (as compose runs it) and PostgreSQL, both on data dirs that outlive restarts."""
    data_dir = tmp_path_factory.mktemp("fault-servers")
    with EmbeddedRedis(data_dir) as redis_server, EmbeddedPostgres(data_dir) as postgres:
        upgrade(postgres.url)
        yield FaultServers(redis_server, postgres)


def pytest_terminal_summary(terminalreporter) -> None:
    if report.LAST is not None:
        terminalreporter.section("fault injection report")
        for line in report.render(report.LAST):
            terminalreporter.write_line(line)
