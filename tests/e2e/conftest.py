"""The engine the end-to-end tests run against: every service as a real process, on the suite's Redis and
PostgreSQL. Most modules use `engine`; the sniper modules make `sniper_engine` their `engine` (so `http`
follows it): the same services with a token launch scheduled shortly after they start.

Both run on the same Redis, and every engine's workers take orders from the same queues, so two at once
would execute each other's orders (and each start empties Redis): the package runs one engine at a time.
A module asking for the one that is not running stops it and starts its own; the sniper modules sort last,
so a whole run starts each engine once.

Both spread orders over E2E_PARTITIONS partitions (shared/domain/partitions.py): every test below proves its
flow with the orders of one run in different partitions, each with its own event stream.

With `E2E_REDIS_CLUSTER=1` in the environment, the engines run on a Redis Cluster the package starts
(tests/support/redis_cluster.py: three primaries, a replica each) instead of the suite's Redis, with
`REDIS_CLUSTER=true`: the same tests prove the same flows with the partitions spread over three shards, one
each (`partition_slot_ranges`).
Tests that read the engine's Redis themselves use `engine_redis_url` and `engine_redis_settings`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from shared.redis_cluster import partition_slot_ranges
from shared.settings import Settings
from tests.support.processes import Engine, running_engine
from tests.support.redis_cluster import redis_cluster

#: WIF launches 30 s after `sniper_engine` starts (a 25 s epoch, then 5 s), its liquidity doubling every 3 s;
#: the next token launches 10 minutes later, after any run.
SNIPER_EPOCH_IN_S = 25
SNIPER_LAUNCHES = {"SIM_LAUNCH_FIRST_S": "5", "SIM_LAUNCH_INTERVAL_S": "600", "SIM_LIQUIDITY_STEP_S": "3"}
E2E_PARTITIONS = 3
E2E_REDIS_CLUSTER = os.environ.get("E2E_REDIS_CLUSTER") == "1"


class OneEngineAtATime:
    def __init__(self, redis_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.redis_url, self.database_url, self.tmp_path_factory = redis_url, database_url, tmp_path_factory
        self.name: str | None = None
        self.engine: Engine | None = None
        self.stack = ExitStack()  # the running engine's `running_engine` block

    def get(self, name: str, epoch_in_s: float = 0, **env: str) -> Engine:
        """The running engine if it is `name`'s, else `name`'s, started with these options after the other stops."""
        if self.name != name or self.engine is None:
            self.stop()
            log_dir = self.tmp_path_factory.mktemp(f"{name}-logs")
            options = {"epoch_in_s": epoch_in_s, "PARTITIONS": str(E2E_PARTITIONS), **env}
            if E2E_REDIS_CLUSTER:
                options["REDIS_CLUSTER"] = "true"
            self.engine = self.stack.enter_context(
                running_engine(self.redis_url, self.database_url, log_dir, **options)
            )
            self.name = name
        return self.engine

    def stop(self) -> None:
        self.stack.close()
        self.stack, self.name, self.engine = ExitStack(), None, None


@pytest.fixture(scope="package")
def engine_redis_url(redis_url, tmp_path_factory) -> Iterator[str]:
    """Where the engines' Redis is: the suite's, or with E2E_REDIS_CLUSTER a cluster of this package's."""
    if not E2E_REDIS_CLUSTER:
        yield redis_url
        return
    ranges = partition_slot_ranges(E2E_PARTITIONS, 3)  # one partition per primary
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster"), slot_ranges=ranges) as cluster:
        yield cluster.url


@pytest.fixture(scope="package")
def engine_redis_settings(engine_redis_url) -> Settings:
    """Settings that reach the engines' Redis (build clients with shared.redis_client from them)."""
    return Settings(redis_url=engine_redis_url, redis_cluster=E2E_REDIS_CLUSTER)


@pytest.fixture(scope="package")
def engines(engine_redis_url, database_url, tmp_path_factory) -> Iterator[OneEngineAtATime]:
    slot = OneEngineAtATime(engine_redis_url, database_url, tmp_path_factory)
    yield slot
    slot.stop()


@pytest.fixture(scope="module")
def engine(engines) -> Engine:
    """Every service as a real process, on the suite's Redis and PostgreSQL."""
    return engines.get("engine")


@pytest.fixture(scope="module")
def sniper_engine(engines) -> Engine:
    """The engine with WIF launching 30 s after the fixture starts, its liquidity doubling every 3 s.

    Started once for the sniper modules together: test_sniper_via_cli.py relies on sorting after
    test_sniper_orders.py, which needs WIF unlisted when it starts."""
    return engines.get("sniper-engine", epoch_in_s=SNIPER_EPOCH_IN_S, **SNIPER_LAUNCHES)
