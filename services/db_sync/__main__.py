"""db-sync: persists every order lifecycle event from the partitions' event streams into PostgreSQL.

`python -m services.db_sync`. Migrates the schema first (advisory-locked, so harmless beside other
services doing the same), then runs one consumer loop per partition (shared/domain/partitions.py), each in a thread
of its own, until SIGTERM/SIGINT, which finishes and acks each one's batch in hand and exits 0.
"""

from __future__ import annotations

import signal
import sys
import threading

from loguru import logger
from sqlalchemy import Engine

from shared.domain.partitions import all_partitions
from shared.logging import setup_logging
from shared.observability.dbsync import SyncerMetrics
from shared.observability.probes import Heartbeat, ServiceProbes, start_probes
from shared.observability.redis_gauges import RedisGauges, dbsync_backlog
from shared.persistence.migrate import upgrade
from shared.persistence.sync import StreamSyncer, make_engine
from shared.redis_client import replica_count, sync_redis_client
from shared.redis_keys import events_stream
from shared.settings import Settings


def _migrate(settings: Settings, stop: threading.Event, alive: Heartbeat) -> bool:
    """Upgrade the schema, waiting (with back-off) for PostgreSQL to answer; False if stopped first."""
    delay, logged = 0.5, False
    while not stop.is_set():
        try:
            upgrade(settings.database_url)
            return True
        except Exception as exc:  # noqa: BLE001 - any failure here means "not reachable yet"
            alive.failed(f"cannot migrate PostgreSQL yet: {exc}")
            if not logged:
                logger.warning("cannot migrate PostgreSQL yet, retrying: {}", str(exc).splitlines()[0])
                logged = True
        stop.wait(delay)
        delay = min(delay * 2, 5.0)
    return False


def main() -> int:
    settings = Settings()
    setup_logging("db-sync", settings)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logger.info("received {}, finishing the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    probes = ServiceProbes.for_service("db-sync", settings)
    alive = probes.health.heartbeat("sync")
    server = start_probes("db-sync", settings, probes)
    try:
        return _run(settings, stop, probes, alive)
    finally:
        if server is not None:
            server.close()


def _syncer(settings: Settings, engine: Engine, stream: str, alive: Heartbeat) -> StreamSyncer:
    """One partition's syncer, with a client of its own (on a cluster, bound to its stream's slot)."""
    client = sync_redis_client(
        settings,
        slot_of=stream,
        socket_timeout=max(10.0, settings.dbsync_block_ms / 1000 + 5),
        socket_connect_timeout=5,
    )
    return StreamSyncer(
        engine,
        client,
        stream=stream,
        batch_size=settings.dbsync_batch_size,
        block_ms=settings.dbsync_block_ms,
        linger_ms=settings.dbsync_linger_ms,
        heartbeat=alive,
        replica_count=replica_count(settings, client.connection_pool),
    )


def _run(settings: Settings, stop: threading.Event, probes: ServiceProbes, alive: Heartbeat) -> int:
    if not _migrate(settings, stop, alive):
        return 0
    # No pre-ping: the syncer retries a batch at once when its pooled connection turns out dead.
    engine = make_engine(
        settings.sqlalchemy_url,
        pool_pre_ping=False,
        statement_timeout_ms=settings.dbsync_statement_timeout_ms,
        pool_size=max(2, settings.partitions),  # one syncer per partition, each with a batch in hand at times
    )
    syncers = [
        _syncer(settings, engine, events_stream(partition), alive) for partition in all_partitions(settings.partitions)
    ]
    probes.registry.register(SyncerMetrics(syncers))
    gauges = RedisGauges(settings, [dbsync_backlog(settings.partitions)])
    probes.registry.register(gauges)
    failures: list[BaseException] = []

    def run(syncer: StreamSyncer) -> None:
        try:
            syncer.run(stop)
        except BaseException as exc:  # one partition's sync failing stops them all: the process exits and is restarted
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=run, args=(syncer,), name=f"sync-{syncer.stream}") for syncer in syncers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gauges.close()
        for syncer in syncers:
            syncer.redis.close()
        engine.dispose()
    if failures:
        raise failures[0]
    return 0


if __name__ == "__main__":
    sys.exit(main())
