"""db-sync's own counters, read from its `StreamSyncer`s (one per partition) when Prometheus scrapes: a syncer
counts entries and batches anyway (for its log and `stats()`), so the metrics cost the sync loop nothing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.persistence.sync import StreamSyncer


class SyncerMetrics(Collector):
    def __init__(self, syncers: Sequence[StreamSyncer]) -> None:
        self.syncers = list(syncers)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        stats = combined([syncer.stats() for syncer in self.syncers])
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


def combined(each: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The syncers' `stats()` as one db-sync process's: counts summed, the latest and the worst of the rest."""
    persisted_at = [stats["lastPersistedAt"] for stats in each if stats["lastPersistedAt"] is not None]
    return {
        **{name: sum(stats[name] for stats in each) for name in ("persistedEntries", "batches", "rebuiltEntries")},
        "lagSeconds": max((stats["lagSeconds"] for stats in each), default=0.0),
        "lastPersistedAt": max(persisted_at, default=None),
        **{name: any(stats[name] for stats in each) for name in ("postgresDown", "redisDown")},
    }
