"""db-sync's own counters, read from its `StreamSyncer` when Prometheus scrapes: the syncer counts entries and
batches anyway (for its log and `stats()`), so the metrics cost the sync loop nothing."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.persistence.sync import StreamSyncer


class SyncerMetrics(Collector):
    def __init__(self, syncer: StreamSyncer) -> None:
        self.syncer = syncer

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        stats = self.syncer.stats()
        yield CounterMetricFamily(
            "engine_dbsync_entries",
            "Event-stream entries persisted to PostgreSQL (one event row each; at least once)",
            value=stats["persistedEntries"],
        )
        yield CounterMetricFamily(
            "engine_dbsync_batches", "Batches persisted, one transaction each", value=stats["batches"]
        )
        yield CounterMetricFamily(
            "engine_dbsync_rebuilt_entries",
            "First entries rebuilt from Redis because another consumer held them",
            value=stats["rebuiltEntries"],
        )
        yield GaugeMetricFamily(
            "engine_dbsync_batch_lag_seconds",
            "Commit time minus event time of the newest entry of the last batch (0 when idle)",
            value=stats["lagSeconds"],
        )
        last = stats["lastPersistedAt"]
        if last is not None:
            yield GaugeMetricFamily(
                "engine_dbsync_last_persisted_timestamp_seconds", "When the last batch was committed", value=last
            )
        down = GaugeMetricFamily(
            "engine_dbsync_dependency_down",
            "1 while db-sync is waiting out an outage of this server",
            labels=["server"],
        )
        down.add_metric(["postgres"], int(stats["postgresDown"]))
        down.add_metric(["redis"], int(stats["redisDown"]))
        yield down
