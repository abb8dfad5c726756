"""Gauges read from Redis when Prometheus scrapes, never on the hot path.

`RedisGauges` is a prometheus_client collector: each scrape runs its readers, in the probe server's thread
with a blocking client of its own, so a slow Redis delays a scrape, never an order, and the service's event
loop is not involved. A reader that fails (Redis down) leaves its gauges out of that scrape, and
`engine_redis_gauges_ok` says so; the scrape itself still answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
from loguru import logger
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared import redis_keys
from shared.domain.partitions import all_partitions
from shared.execution.backlog import ExecutionBacklog, read_backlog_sync
from shared.redis_client import sync_redis_client
from shared.settings import Settings

#: One reading: the metric families it produced from the client, complete (a reader fails as a whole).
Reader = Callable[[redis.Redis], list[Metric]]

SCRAPE_TIMEOUT_S = 2.0


class RedisGauges(Collector):
    def __init__(self, redis_at: Settings | str, readers: Sequence[Reader]) -> None:
        self.client = sync_redis_client(
            redis_at, socket_timeout=SCRAPE_TIMEOUT_S, socket_connect_timeout=SCRAPE_TIMEOUT_S
        )
        self.readers = list(readers)

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not need Redis (it may not be up yet)

    def collect(self) -> Iterable[Metric]:
        ok = 1
        for read in self.readers:
            try:
                families = read(self.client)
            except (redis.RedisError, OSError) as exc:
                logger.debug("scrape: {} failed: {!r}", getattr(read, "__name__", read), exc)
                ok = 0
                continue
            yield from families
        yield GaugeMetricFamily(
            "engine_redis_gauges_ok", "1 when every gauge read from Redis at this scrape could be read", value=ok
        )

    def close(self) -> None:
        self.client.close()


def execution_backlog(partitions: int = 1) -> Reader:
    """Queue depth and dead letters, every partition's added up (the API exports the same gauges, read the same
    way)."""

    def execution_backlog(client: redis.Redis) -> list[Metric]:
        return _backlog_gauges(read_backlog_sync(client, partitions))

    return execution_backlog


def _backlog_gauges(backlog: ExecutionBacklog) -> list[Metric]:
    depth = GaugeMetricFamily(
        "engine_execution_queue_depth",
        "Messages waiting in the execution queue (ready, delayed retries), read at scrape time",
        labels=["queue"],
    )
    depth.add_metric(["ready"], backlog.ready)
    depth.add_metric(["delayed"], backlog.delayed)
    dead = GaugeMetricFamily(
        "engine_dead_letters", "Dead-lettered execution messages, read at scrape time", value=backlog.dead_letters
    )
    return [depth, dead]


def resting_limit_orders(pairs: Sequence[tuple[str, str]], partitions: int = 1) -> Reader:
    """Limit orders resting, by pair, every partition's book added up."""
    names = [f"{token_in}-{token_out}" for token_in, token_out in pairs]
    books = [(pair, p) for pair in names for p in all_partitions(partitions)]

    def resting_limit_orders(client: redis.Redis) -> list[Metric]:
        with client.pipeline(transaction=False) as pipe:
            for pair, p in books:
                pipe.zrange(redis_keys.limit_buckets(pair, p), 0, -1)
            indexes = pipe.execute()
        buckets = [
            (pair, redis_keys.limit_bucket(pair, int(bucket), p))
            for (pair, p), index in zip(books, indexes, strict=True)
            for bucket in index
        ]
        with client.pipeline(transaction=False) as pipe:
            for _, key in buckets:
                pipe.zcard(key)
            sizes = pipe.execute() if buckets else []
        counts = dict.fromkeys(names, 0)
        for (pair, _), size in zip(buckets, sizes, strict=True):
            counts[pair] += size
        family = GaugeMetricFamily(
            "engine_limit_orders_resting", "Limit orders resting in their price buckets, by pair", labels=["pair"]
        )
        for pair, count in counts.items():
            family.add_metric([pair], count)
        return [family]

    return resting_limit_orders


def resting_conditional_orders(pairs: Sequence[tuple[str, str]], partitions: int = 1) -> Reader:
    """Conditional orders resting, by type and pair, every partition's book added up. Every OCO is in both the
    stops and the take-profits set (both sides leave in one step), so stops alone are the difference."""
    names = [f"{token_in}-{token_out}" for token_in, token_out in pairs]
    books = [(pair, p) for pair in names for p in all_partitions(partitions)]

    def resting_conditional_orders(client: redis.Redis) -> list[Metric]:
        with client.pipeline(transaction=False) as pipe:
            for pair, p in books:
                pipe.zcard(redis_keys.cond_stops(pair, p))
                pipe.zcard(redis_keys.cond_take_profits(pair, p))
                pipe.zrange(redis_keys.cond_trail_widths(pair, p), 0, -1)
            sizes = pipe.execute()
        trails = [
            (pair, redis_keys.cond_trail(pair, int(bps), p))
            for i, (pair, p) in enumerate(books)
            for bps in sizes[3 * i + 2]
        ]
        with client.pipeline(transaction=False) as pipe:
            for _, key in trails:
                pipe.zcard(key)
            trail_sizes = pipe.execute() if trails else []
        counts = {pair: {"stop": 0, "oco": 0, "trailing_stop": 0} for pair in names}
        for i, (pair, _) in enumerate(books):
            stops, ocos = sizes[3 * i], sizes[3 * i + 1]
            counts[pair]["stop"] += stops - ocos
            counts[pair]["oco"] += ocos
        for (pair, _), size in zip(trails, trail_sizes, strict=True):
            counts[pair]["trailing_stop"] += size
        family = GaugeMetricFamily(
            "engine_conditional_orders_resting",
            "Conditional orders resting, by type (stop, trailing_stop, oco) and pair",
            labels=["type", "pair"],
        )
        for pair, by_type in counts.items():
            for order_type, count in by_type.items():
                family.add_metric([order_type, pair], count)
        return [family]

    return resting_conditional_orders


def armed_sniper_orders(partitions: int = 1) -> Reader:
    """Sniper orders waiting in their trigger sets, by trigger kind and pair, every partition's added up."""

    def armed_sniper_orders(client: redis.Redis) -> list[Metric]:
        with client.pipeline(transaction=False) as pipe:
            for p in all_partitions(partitions):
                pipe.zrange(redis_keys.sniper_resting(p), 0, -1)
            indexes = pipe.execute()
        # (kind, pair) of each set, and its key: a set is named `sniper:{p<k>}:<kind>:<pair>`.
        sets = [(key.decode(), p) for p, index in enumerate(indexes) for key in index]
        with client.pipeline(transaction=False) as pipe:
            for key, _ in sets:
                pipe.zcard(key)
            sizes = pipe.execute() if sets else []
        counts: dict[tuple[str, str], int] = {}
        for (key, p), size in zip(sets, sizes, strict=True):
            kind, pair = redis_keys.sniper_set_trigger(key, p)
            counts[kind, pair] = counts.get((kind, pair), 0) + size
        family = GaugeMetricFamily(
            "engine_sniper_orders_armed",
            "Sniper orders waiting for their trigger, by kind and pair",
            labels=["kind", "pair"],
        )
        for (kind, pair), count in counts.items():
            family.add_metric([kind, pair], count)
        return [family]

    return armed_sniper_orders


def _ms_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


def dbsync_backlog(partitions: int = 1) -> Reader:
    """How far PostgreSQL trails the event streams, from db-sync's consumer group on each partition's.

    db-sync acknowledges an entry only after PostgreSQL committed it, so the oldest entry not acknowledged
    (the oldest pending one, else the first one not yet delivered) is the oldest event PostgreSQL lacks;
    its age, from the milliseconds in its stream id, is the history's lag now (0 when it has everything).
    Over partitions: the oldest of them all, and the sums."""
    streams = [redis_keys.events_stream(partition) for partition in all_partitions(partitions)]

    def dbsync_backlog(client: redis.Redis) -> list[Metric]:
        readings = [_stream_backlog(client, stream) for stream in streams]
        oldests = [oldest for oldest, _, _ in readings if oldest is not None]
        lag = max(0.0, time.time() - min(oldests) / 1000) if oldests else 0.0
        return [
            GaugeMetricFamily(
                "engine_dbsync_lag_seconds",
                "Age of the oldest event PostgreSQL does not have yet (0 when it has them all), read at scrape time",
                value=lag,
            ),
            GaugeMetricFamily(
                "engine_dbsync_pending_entries",
                "Event-stream entries delivered to db-sync and not yet acknowledged (persisted)",
                value=sum(pending for _, pending, _ in readings),
            ),
            GaugeMetricFamily(
                "engine_event_stream_length",
                "Entries in the event streams (db-sync trims what it persisted)",
                value=sum(length for _, _, length in readings),
            ),
        ]

    return dbsync_backlog


def _as_dict(group: Any) -> dict[str, Any]:
    """An XINFO GROUPS entry as redis-py parses it, with text field names: redis-py's cluster client leaves a
    transaction's field names as bytes."""
    return {(name.decode() if isinstance(name, bytes) else name): value for name, value in group.items()}


def _pending_summary(summary: Any) -> dict[str, Any]:
    """An XPENDING summary as redis-py parses it, from its raw form (count, min, max, consumers) too: redis-py's
    cluster client leaves a transaction's summary unparsed."""
    if isinstance(summary, dict):
        return summary
    return {"pending": summary[0], "min": summary[1], "max": summary[2]}


def _stream_backlog(client: redis.Redis, stream: str) -> tuple[int | None, int, int]:
    """One event stream's oldest entry db-sync has not persisted (its ms, None if none), pending, length."""
    with client.pipeline(transaction=True) as pipe:  # one moment for every reading
        pipe.xinfo_groups(stream)
        pipe.xpending(stream, redis_keys.DBSYNC_GROUP)
        pipe.xlen(stream)
        try:
            groups, summary, length = pipe.execute()
        except redis.ResponseError:  # no stream or no group yet: db-sync has not started on this Redis
            groups, summary, length = [], {"pending": 0}, 0
    groups, summary = [_as_dict(group) for group in groups], _pending_summary(summary)
    group = next((g for g in groups if g["name"] in (redis_keys.DBSYNC_GROUP, redis_keys.DBSYNC_GROUP.encode())), None)
    oldest = _ms_of(summary["min"]) if summary["pending"] else None
    if group is not None:
        last = group["last-delivered-id"]
        undelivered = client.xrange(stream, min=f"({last.decode() if isinstance(last, bytes) else last}", count=1)
        if undelivered:
            first_id = undelivered[0][0]
            assert first_id is not None  # only XCLAIM and XREADGROUP report a deleted entry as (None, None)
            first = _ms_of(first_id)
            oldest = first if oldest is None else min(oldest, first)
    return oldest, int(summary["pending"]), int(length)
