"""db-sync: drain `stream:events` into PostgreSQL with a consumer group, losing nothing.

Loop: re-read this consumer's own pending entries, claim the idle ones of dead consumers, then
XREADGROUP `>` -> `persist_batch` -> XACK -> XTRIM MINID (only what the group has persisted). While
PostgreSQL or Redis is away the same batch is retried with back-off (0.5 s doubling to 5 s) and
nothing is acknowledged, so the backlog drains when they return. An event whose order has no row yet
(its seq-1 entry is pending with another consumer, maybe a dead one) gets that entry rebuilt from the
order's hash and event log in Redis (inside the transaction that found it missing), so replicas never wait on,
or drop, each other's entries.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis
import sqlalchemy.exc as sa_exc
from loguru import logger
from sqlalchemy.engine import Engine

from shared import redis_keys
from shared.persistence.batch import OrphanEventsError, make_engine, parse_entries, persist_batch
from shared.redis_client import REDIS_UNAVAILABLE
from shared.redis_keys import DBSYNC_GROUP, events_stream
from shared.redis_replicas import ReplicaCount, blocking_barrier

__all__ = ["OrphanEventsError", "StreamSyncer", "make_engine", "parse_entries", "persist_batch"]

Entry = tuple[Any, Any]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _next_id(entry_id: str) -> str:
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


#: Persisted entries stay this long before trimming, so a live reader (the API's event hub) that falls
#: briefly behind still finds them.
KEEP_PERSISTED_MS = 60_000
#: Trimming costs a MULTI (XINFO GROUPS + XPENDING) and an XTRIM: once a second is plenty for a stream that
#: keeps a minute of persisted entries anyway.
TRIM_INTERVAL_S = 1.0


class StreamSyncer:
    """Consumes `stream` as `consumer` of `group`; call `run(stop)` from one thread."""

    def __init__(
        self,
        engine: Engine,
        client: redis.Redis,
        *,
        batch_size: int = 500,
        block_ms: int = 200,
        stream: str = events_stream(0),
        group: str = DBSYNC_GROUP,
        consumer: str | None = None,
        claim_idle_ms: int = 30_000,
        orphan_grace_s: float = 30.0,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 5.0,
        keep_persisted_ms: int = KEEP_PERSISTED_MS,
        persist: Callable[..., None] = persist_batch,
        linger_ms: int = 0,
        heartbeat: Any = None,
        replica_count: ReplicaCount | None = None,
    ) -> None:
        self.engine, self.redis, self.stream, self.group = engine, client, stream, group
        self.batch_size, self.block_ms, self.claim_idle_ms = batch_size, block_ms, claim_idle_ms
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.orphan_grace_s = orphan_grace_s
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        self._persist = persist
        self.keep_persisted_ms = keep_persisted_ms
        # After a batch that was not full, wait this long (from the previous read) before reading again.
        self.linger_s = linger_ms / 1000
        self._last_read = 0.0
        self._last_trim = 0.0
        self._trim_due = False
        self.stop_event = threading.Event()
        # /health (shared/observability/probes.Heartbeat): ok after every pass, failed while a server is away.
        self.heartbeat = heartbeat if heartbeat is not None else _NoHeartbeat()
        # Entries are persisted only once the replicas hold them (shared/redis_replicas.py): PostgreSQL must not
        # keep an event a failover takes back. Set when they did not in time: read this consumer's pending
        # entries again (those that survived) before new ones.
        self.replica_count = replica_count
        self._unconfirmed = False
        self._down: dict[str, float] = {}  # "postgres"/"redis" -> when the current outage began
        # --- metrics -----------------------------------------------------------------------------------
        self.persisted_entries = self.batches = 0
        self.rebuilt_entries = 0  # first entries rebuilt from Redis for events whose seq-1 entry was elsewhere
        self.pending = 0  # entries delivered to the group but not acknowledged, at the last trim
        self.last_persisted_at: float | None = None  # wall time of the last successful persist
        self.newest_event_ts: float | None = None  # event time of the newest entry persisted
        self.lag_s = 0.0  # persist time - event time of the newest entry of the last batch; 0 when idle

    # --- public ------------------------------------------------------------------------------------------
    def stop(self) -> None:
        self.stop_event.set()

    def stats(self) -> dict[str, Any]:
        return {
            "consumer": self.consumer,
            "persistedEntries": self.persisted_entries,
            "batches": self.batches,
            "rebuiltEntries": self.rebuilt_entries,
            "pending": self.pending,
            "lagSeconds": self.lag_s,
            "newestEventTs": self.newest_event_ts,
            "lastPersistedAt": self.last_persisted_at,
            "postgresDown": "postgres" in self._down,
            "redisDown": "redis" in self._down,
        }

    def run(self, stop: threading.Event | None = None) -> None:
        """Run until `stop` (or `self.stop()`) is set; the batch in hand is finished and acked first."""
        if stop is not None:
            self.stop_event = stop
        logger.info("db-sync consuming {} as {}/{}", self.stream, self.group, self.consumer)
        if self._redis(self.ensure_group) is None:
            return
        while not self.stop_event.is_set():  # this consumer's own unacknowledged entries first
            entries = self._read("0")
            if not entries or not self.handle(entries):
                break
        self.claim_dead()
        last_claim = time.monotonic()
        while not self.stop_event.is_set():
            if time.monotonic() - last_claim > self.claim_idle_ms / 1000:
                self.claim_dead()
                last_claim = time.monotonic()
            if not self.step():
                self.lag_s = 0.0
                if self._trim_due:  # quiet now: trim what the last (throttled) batches left
                    self._trim_now()
        logger.info("db-sync stopped after {} entries", self.persisted_entries)

    def step(self) -> int:
        """Read, persist, ack and trim one batch of new entries; the number of entries handled."""
        entries = self._read("0") if self._unconfirmed else self._read(">", self.block_ms)
        if entries or self._unconfirmed:
            self._unconfirmed = not self._replicated()
            if self._unconfirmed:
                return 0
        if entries:
            self.handle(entries)
        self.heartbeat.ok()
        if 0 < len(entries) < self.batch_size and self.linger_s:
            # Keeping up: let the next batch gather for a moment. Each batch costs a fixed few round trips and
            # a transaction whatever its size, so a stream of 5-entry batches costs several times the CPU
            # (here and in PostgreSQL) of 100-entry ones; the price is at most linger_ms more history lag.
            self.stop_event.wait(max(0.0, self._last_read + self.linger_s - time.monotonic()))
        return len(entries)

    def ensure_group(self) -> bool:
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        return True

    def claim_dead(self) -> None:
        """Take over entries that other (dead) consumers left unacknowledged for `claim_idle_ms`."""
        cursor = "0-0"
        while not self.stop_event.is_set():
            reply = self._redis(functools.partial(self._autoclaim, cursor))
            if reply is None:
                return
            cursor, claimed = _s(reply[0]), [e for e in reply[1] if e]
            if claimed and not self._replicated():
                return  # the next pass claims them again, from whichever master holds them then
            if claimed:
                logger.warning("db-sync claimed {} entries from dead consumers", len(claimed))
                self.handle(claimed)
            if cursor == "0-0":
                break
        with contextlib.suppress(redis.ResponseError):
            self._redis(self._forget_idle_consumers)

    def handle(self, entries: Sequence[Entry]) -> bool:
        """Persist `entries` (retrying through outages), then ack and trim. False if stopped first."""
        if not self._persist_until_done(entries):
            return False
        ids = [e[0] for e in entries]
        # Stopped during a Redis outage: the entries stay pending and are persisted again (harmlessly) later.
        if self._redis(lambda: self.redis.xack(self.stream, self.group, *ids)) is None:
            return False
        self._trim_due = True
        if time.monotonic() - self._last_trim >= TRIM_INTERVAL_S:
            self._trim_now()
        return True

    def _trim_now(self) -> None:
        self._last_trim, self._trim_due = time.monotonic(), False
        try:
            self._redis(self.trim)
        except redis.ResponseError as exc:  # e.g. the stream was deleted under us: nothing to trim
            logger.warning("db-sync could not trim {}: {}", self.stream, exc)

    def trim(self) -> None:
        """XTRIM MINID: keep the oldest entry still pending in the group, or everything after the last one
        delivered when none is pending. Both are read in one MULTI so no delivery slips in between."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xinfo_groups(self.stream)
        pipe.xpending(self.stream, self.group)
        groups, summary = pipe.execute()
        self.pending = int(summary["pending"])
        if self.pending:
            min_id = _s(summary["min"])
        else:
            group = next((g for g in groups if _s(g["name"]) == self.group), None)
            last = _s(group["last-delivered-id"]) if group else "0-0"
            if last == "0-0":
                return
            min_id = _next_id(last)
        keep_from = f"{int(time.time() * 1000) - self.keep_persisted_ms}-0"
        min_id = min(min_id, keep_from, key=_id_key)
        self.redis.xtrim(self.stream, minid=min_id, approximate=False)

    # --- internals ---------------------------------------------------------------------------------------
    def _read(self, start: str, block: int | None = None) -> list[Entry]:
        self._last_read = time.monotonic()
        reply = self._redis(
            lambda: self.redis.xreadgroup(
                self.group, self.consumer, {self.stream: start}, count=self.batch_size, block=block
            )
        )
        return [(entry_id, fields) for _stream, messages in reply or [] for entry_id, fields in messages]

    def _persist_until_done(self, entries: Sequence[Entry]) -> bool:
        delay, orphans_since, reconnected = self.min_backoff_s, None, False
        while True:
            try:
                allow = orphans_since is not None and time.monotonic() - orphans_since > self.orphan_grace_s
                self._persist_isolating(entries, allow_orphans=allow)
            except OrphanEventsError as exc:
                # Events whose seq-1 entry is pending elsewhere were given their first entry rebuilt from Redis
                # inside the batch's transaction; these orders are not in Redis (any more), or Redis did not
                # answer: retry for a while, then drop their events.
                if orphans_since is None:
                    orphans_since = time.monotonic()
                    logger.warning("db-sync: {}; retrying for {} s", exc, self.orphan_grace_s)
                self.heartbeat.ok()  # waiting on purpose, for a bounded time: alive, not stuck
            except (sa_exc.SQLAlchemyError, OSError) as exc:
                if getattr(exc, "connection_invalidated", False) and not reconnected:
                    # A pooled connection PostgreSQL had closed (a restart, an idle timeout): SQLAlchemy dropped
                    # it, so try once more at once, on a new one. db-sync's engine has no pool_pre_ping, which
                    # spends a round trip on every batch to catch the same thing; if PostgreSQL is really
                    # away, this retry fails too and backs off below.
                    reconnected = True
                    continue
                self.heartbeat.failed(f"PostgreSQL unavailable: {exc!r}")
                if "postgres" not in self._down:
                    self._down["postgres"] = time.monotonic()
                    logger.warning(
                        "PostgreSQL unavailable, holding {} entries unacked: {}",
                        len(entries),
                        str(exc).splitlines()[0] if str(exc) else repr(exc),
                    )
            else:
                self._recovered("postgres")
                self._record(entries)
                return True
            if self.stop_event.wait(delay):
                return False
            delay = min(delay * 2, self.max_backoff_s)

    def _first_entries(self, order_ids: set[Any]) -> list[Entry]:
        """Each order's seq-1 stream entry (id, spec, first event) rebuilt from its hash and event log in Redis;
        orders Redis no longer holds are left out. `persist_batch` calls it for orders it does not find: their
        seq-1 entry is pending with another consumer (maybe a dead one, whose entries are claimed only after
        claim_idle_ms), and waiting for it would hold this batch up, or drop events once the grace ran out."""
        ids = sorted(str(order_id) for order_id in order_ids)
        if not ids:
            return []
        try:
            pipe = self.redis.pipeline(transaction=False)
            for order_id in ids:
                pipe.hget(redis_keys.order(order_id), "spec")
                pipe.lindex(redis_keys.order_events(order_id), 0)
            replies = pipe.execute()
        except redis.RedisError as exc:
            logger.warning("db-sync cannot read orders to rebuild their first entries: {}", exc)
            return []
        rebuilt = [
            (None, {b"o": order_id.encode(), b"e": first, b"s": spec})
            for order_id, spec, first in zip(ids, replies[::2], replies[1::2], strict=True)
            if spec and first
        ]
        self.rebuilt_entries += len(rebuilt)
        return rebuilt

    def _persist_isolating(self, entries: Sequence[Entry], *, allow_orphans: bool) -> None:
        """One transaction for the batch; if PostgreSQL rejects the data, one per entry, dropping bad ones."""
        try:
            self._persist(self.engine, entries, allow_orphans=allow_orphans, rebuild=self._first_entries)
        except (sa_exc.DataError, sa_exc.IntegrityError) as exc:
            if len(entries) == 1:
                logger.error("db-sync: dropping entry {} rejected by PostgreSQL: {}", _s(entries[0][0]), exc)
                return
            for entry in entries:
                self._persist_isolating([entry], allow_orphans=allow_orphans)

    def _record(self, entries: Sequence[Entry]) -> None:
        self.heartbeat.ok()
        now = time.time()
        self.persisted_entries += len(entries)
        self.batches += 1
        self.last_persisted_at = now
        if entries:  # XREADGROUP and XAUTOCLAIM return entries in id order: the last one is the newest
            self.newest_event_ts = int(_s(entries[-1][0]).partition("-")[0]) / 1000
            self.lag_s = max(0.0, now - self.newest_event_ts)

    def _redis(self, call: Callable[[], Any]) -> Any:
        """Run a Redis call, backing off through connection errors; None if stopped meanwhile."""
        delay, recreate_group = self.min_backoff_s, False
        while True:
            try:
                if recreate_group:
                    self.ensure_group()
                    recreate_group = False
                result = call()
            except REDIS_UNAVAILABLE as exc:  # READONLY too: a demoted master, a failover in progress
                self.heartbeat.failed(f"Redis unavailable: {exc!r}")
                if "redis" not in self._down:
                    self._down["redis"] = time.monotonic()
                    logger.warning("Redis unavailable, retrying: {}", exc)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                logger.warning("db-sync consumer group missing (Redis restarted?), recreating it")
                recreate_group = True
                continue
            else:
                self._recovered("redis")
                return result
            if self.stop_event.wait(delay):
                return None
            delay = min(delay * 2, self.max_backoff_s)

    def _replicated(self) -> bool:
        """Whether the replicas hold everything read so far; if not, after a back-off, False."""
        try:
            blocking_barrier(self.redis, self.replica_count)
        except REDIS_UNAVAILABLE as exc:
            self.heartbeat.failed(f"Redis replicas behind: {exc!r}")
            logger.warning("read entries not yet on the replicas ({!r}); reading them again", exc)
            self.stop_event.wait(self.min_backoff_s)
            return False
        return True

    def _autoclaim(self, cursor: str) -> Any:
        return self.redis.xautoclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms, start_id=cursor, count=self.batch_size
        )

    def _forget_idle_consumers(self) -> None:
        for info in self.redis.xinfo_consumers(self.stream, self.group):
            name = _s(info["name"])
            if name != self.consumer and int(info["pending"]) == 0 and int(info["idle"]) > 3_600_000:
                self.redis.xgroup_delconsumer(self.stream, self.group, name)

    def _recovered(self, what: str) -> None:
        began = self._down.pop(what, None)
        if began is not None:
            name = "PostgreSQL" if what == "postgres" else "Redis"
            logger.info("{} is back after {:.1f} s", name, time.monotonic() - began)


class _NoHeartbeat:
    def ok(self) -> None:
        pass

    def failed(self, reason: object) -> None:
        pass
