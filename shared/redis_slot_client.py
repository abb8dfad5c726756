"""A blocking Redis client bound to one hash slot of a Redis Cluster: whichever primary serves it now.

The blocking side of the engine talks to one partition at a time: a partition's dramatiq broker (every key
under `dramatiq:{p<k>}`), a partition's db-sync consumer (`stream:events:{p<k>}`). Each gets an ordinary
`redis.Redis` whose connections are opened to the primary that serves its slot, as a Sentinel-managed client's
are opened to the master the sentinels name (redis-py's `SentinelManagedConnection`, the model here):

- at connect, the slot's primary is looked up in a map read with `CLUSTER SLOTS` (shared by the process's
  clients, read again when it is found stale);
- a reply that says the slot is served elsewhere (`MOVED`: a failover or a resharding), or that the cluster
  cannot serve it (`CLUSTERDOWN`, `TRYAGAIN`), drops the connection, marks the map stale and fails the command
  as a `ConnectionError`: the caller's existing reconnect or ride-out path retries it, on the new primary.

Everything else is a plain client, so dramatiq's broker, `blocking_barrier`'s PUBLISH + WAIT on one connection,
and pipelines behave exactly as on a single Redis.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import redis as sync_redis
from redis.connection import Connection, ConnectionPool
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, MovedError, RedisError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.redis_cluster import REFRESH_MIN_INTERVAL_S, Address, slot_map

#: How long looking a primary up may wait on one node before trying the next.
LOOKUP_TIMEOUT_S = 2.0


class SlotMap:
    """Which primary serves each slot, read from the first node that answers (thread-safe; one per seed)."""

    def __init__(self, seeds: list[Address], **connection_options: Any) -> None:
        self.seeds = seeds
        self.options = connection_options
        self._slots: list[Address | None] = []
        self._read_at = 0.0
        self._lock = threading.Lock()

    def primary(self, slot: int) -> Address:
        with self._lock:
            if not self._slots or self._slots[slot] is None:
                self._read()
            address = self._slots[slot]
        if address is None:
            raise RedisConnectionError(f"no primary serves slot {slot} (CLUSTERDOWN)")
        return address

    def stale(self) -> None:
        with self._lock:
            if time.monotonic() - self._read_at >= REFRESH_MIN_INTERVAL_S:
                self._slots = []

    def _read(self) -> None:
        known = sorted({address for address in self._slots if address is not None})
        failures = []
        for host, port in [*known, *self.seeds]:
            client = sync_redis.Redis(
                host=host, port=port, socket_timeout=LOOKUP_TIMEOUT_S, socket_connect_timeout=LOOKUP_TIMEOUT_S,
                **self.options,
            )  # fmt: skip
            try:
                self._slots = slot_map(client.execute_command("CLUSTER SLOTS"), host)  # type: ignore[no-untyped-call]
                self._read_at = time.monotonic()
                for address in self._slots:
                    if address is not None and address not in self.seeds:
                        self.seeds.append(address)  # a seed that dies leaves the others to ask
                return
            except (RedisError, OSError) as exc:
                failures.append(f"{host}:{port} {exc!r}")
            finally:
                client.close()
        raise RedisConnectionError(f"no cluster node answered CLUSTER SLOTS: {'; '.join(failures)}")


_MAPS: dict[tuple[Address, ...], SlotMap] = {}
_MAPS_LOCK = threading.Lock()


def shared_map(seeds: list[Address], **options: Any) -> SlotMap:
    with _MAPS_LOCK:
        return _MAPS.setdefault(tuple(seeds), SlotMap(list(seeds), **options))


class SlotPrimaryConnection(Connection):
    """A connection opened to the primary that serves its pool's slot, dropped when that moves."""

    def __init__(self, **kwargs: Any) -> None:
        self.slot_pool: SlotPrimaryPool = kwargs.pop("slot_pool")
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]  # redis-py: unannotated

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self._sock is not None:
            return
        self.host, self.port = self.slot_pool.slots.primary(self.slot_pool.slot)
        try:
            super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)
        except (RedisConnectionError, OSError):
            self.slot_pool.slots.stale()  # a primary that died: its replica may be promoted by the next try
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except (MovedError, ClusterDownError, TryAgainError) as exc:
            self.slot_pool.slots.stale()
            self.disconnect()  # type: ignore[no-untyped-call]  # redis-py: unannotated
            raise RedisConnectionError(f"slot {self.slot_pool.slot} is not served here now: {exc}") from exc


class SlotPrimaryPool(ConnectionPool):
    def __init__(self, slots: SlotMap, slot: int, **kwargs: Any) -> None:
        self.slots = slots
        self.slot = slot
        kwargs["connection_class"] = SlotPrimaryConnection
        super().__init__(**kwargs)
        self.connection_kwargs["slot_pool"] = self


def slot_client(url: str, key: str, **options: Any) -> sync_redis.Redis:
    """A blocking client of the primary that serves `key`'s slot, in the cluster `url` names a node of."""
    parts = urlsplit(url)
    seeds = [(parts.hostname or "127.0.0.1", parts.port or 6379)]
    auth = {"username": parts.username, "password": parts.password} if parts.password else {}
    pool = SlotPrimaryPool(shared_map(seeds, **auth), key_slot(key.encode()), **auth, **options)
    return sync_redis.Redis(connection_pool=pool)
