"""Redis managed by Sentinel: clients that follow the master through a failover.

Each client is a sentinel `master_for` client, whose connections ask the sentinels for the master's address
(`GET-MASTER-ADDR-BY-NAME`) whenever they (re)connect, and whose pool asks again every second while they stay
open, so when a failover moves the master the same client object carries on against the new one. A
connection still open to a demoted master gets `READONLY` on its next write; redis-py's sentinel connection
then drops it and raises a `ConnectionError`, which every caller treats as "Redis is away for a moment": the
next command reconnects through the sentinels. `REDIS_URL` supplies only the master's credentials, database
and scheme; the sentinels are reached over plain TCP, with `REDIS_SENTINEL_PASSWORD` if they have one.

Built through shared/redis_client.py's factory, never directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import redis as sync_redis
import redis.sentinel as sync_sentinel
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.redis_packing import HiredisPacking
from shared.settings import Settings

#: How long a client waits for one sentinel before asking the next: a sentinel answers from memory, so a
#: slow one is a dead or frozen one, and waiting on it would stall every reconnect during a failover.
SENTINEL_TIMEOUT_S = 1.0
#: How often a Sentinel-managed pool asks the sentinels whether the master moved while its connections stay
#: open (see `_FollowsTheMaster`): one query a second per pool costs the sentinels nothing, and bounds how
#: long a client keeps writing to a master the sentinels already replaced.
MASTER_RECHECK_S = 1.0


class _FollowsTheMaster(SentinelManagedConnection):
    """A sentinel connection that follows the master even while it is connected.

    redis-py's asks the sentinels where the master is only when it connects, so two things escape it:

    * A connection still open to the old master keeps using it. After `kill -9` its socket fails and it
      reconnects, but a manual failover (or one after a partition) leaves the old master up and taking writes
      until the sentinels get round to demoting it, ten seconds later: every write meanwhile is lost with
      it. So, at most every MASTER_RECHECK_S, the pool asks the sentinels again (in the background: a slow
      sentinel never holds a command up), and a connection about to send to an address that is no longer
      the master's drops itself first.
    * A connection that is *held* (a `single_connection` client: the API's event reader) and lost reconnects
      from `send_packed_command`, straight to the address it had, the dead or demoted master, for ever
      (redis-py issue #3874, open in 8.1): it reconnects through `connect()`, which asks the sentinels.
    """

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        pool = self.connection_pool
        if pool.is_master:
            _recheck_master(pool)
            if self.is_connected and pool.master_address not in (None, (self.host, self.port)):
                await self.disconnect()
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]  # redis-py: unannotated
        await super().send_packed_command(command, check_health)


#: Background re-checks of where the master is, held until done (the loop keeps only weak references).
_RECHECKS: set[asyncio.Task[Any]] = set()


def _recheck_master(pool: Any) -> None:
    """Ask the sentinels where `pool`'s master is, in the background, at most every MASTER_RECHECK_S;
    `get_master_address` records it and drops the pool's idle connections if it moved."""
    now = time.monotonic()
    if now < getattr(pool, "_recheck_at", 0.0):
        return
    pool._recheck_at = now + MASTER_RECHECK_S
    task = asyncio.get_running_loop().create_task(pool.get_master_address())
    _RECHECKS.add(task)
    task.add_done_callback(_recheck_done)


def _recheck_done(task: asyncio.Task[Any]) -> None:
    _RECHECKS.discard(task)
    if not task.cancelled():
        task.exception()  # sentinels unsure or away: the commands themselves will say whether it matters


class HiredisSentinelConnection(HiredisPacking, _FollowsTheMaster):
    pass


class HiredisSentinelSslConnection(HiredisPacking, _FollowsTheMaster, SSLConnection):
    pass


class SyncSentinelConnection(sync_sentinel.SentinelManagedConnection):
    """`_FollowsTheMaster` for the blocking clients (redis-py's sync connection has the same gaps); the
    background re-check runs in a short-lived daemon thread."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        proxy = self.connection_pool  # redis-py's SentinelConnectionPoolProxy
        if proxy.is_master:
            _recheck_master_in_thread(proxy)
            if self._sock is not None and proxy.master_address not in (None, (self.host, self.port)):
                self.disconnect()
        if self._sock is None:
            self.connect()  # type: ignore[no-untyped-call]  # redis-py: unannotated
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


_SYNC_RECHECK_LOCK = threading.Lock()


def _recheck_master_in_thread(proxy: Any) -> None:
    now = time.monotonic()
    with _SYNC_RECHECK_LOCK:
        if now < getattr(proxy, "_recheck_at", 0.0):
            return
        proxy._recheck_at = now + MASTER_RECHECK_S

    def recheck() -> None:
        with contextlib.suppress(Exception):  # sentinels unsure or away: the commands will tell
            proxy.get_master_address()

    threading.Thread(target=recheck, name="sentinel-recheck", daemon=True).start()


class SyncSentinelSslConnection(SyncSentinelConnection, sync_redis.SSLConnection):
    pass


def _address(reply: Any) -> tuple[str, int] | None:
    """GET-MASTER-ADDR-BY-NAME's reply as the pool compares addresses: (str host, int port)."""
    if not reply:
        return None
    host, port = reply
    return (host.decode() if isinstance(host, bytes) else str(host), int(port))


class EngineSentinel(Sentinel):
    """redis-py's asyncio Sentinel, except that the master's address is asked the way Redis's guidelines for
    Sentinel clients say, `SENTINEL GET-MASTER-ADDR-BY-NAME`. redis-py reads it from `SENTINEL MASTERS`,
    which names the old master until the whole failover is over (every replica reconfigured: seconds
    after the promotion), while the old master, if it is up, still takes writes that will be lost with it.
    The new master is named from the moment it is promoted. (Before a failover a dead master is still
    named: connecting to it fails, which callers take as the outage it is.)"""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        errors = []
        for index, sentinel in enumerate(self.sentinels):
            try:
                address = _address(await sentinel.sentinel_get_master_addr_by_name(service_name))
            except (RedisConnectionError, RedisTimeoutError) as exc:
                errors.append(f"{sentinel} - {exc!r}")
                continue
            if address is not None:
                # The sentinel that answered is asked first next time, as redis-py does.
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                return address
        raise MasterNotFoundError(f"No master found for {service_name!r}: {', '.join(errors) or 'unknown name'}")


class SyncEngineSentinel(sync_sentinel.Sentinel):
    """`EngineSentinel` for the blocking clients."""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        errors = []
        for index, sentinel in enumerate(self.sentinels):
            try:
                address = _address(sentinel.sentinel_get_master_addr_by_name(service_name))
            except (RedisConnectionError, RedisTimeoutError) as exc:
                errors.append(f"{sentinel} - {exc!r}")
                continue
            if address is not None:
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                return address
        raise sync_sentinel.MasterNotFoundError(
            f"No master found for {service_name!r}: {', '.join(errors) or 'unknown name'}"
        )


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """A sentinel pool that, when all its connections are in use, makes a caller wait (`timeout`) for one
    instead of failing, as `BlockingConnectionPool` does for a plain server (redis-py has no such class)."""


def sentinel_master(
    settings: Settings,
    client_class: type[Redis],
    *,
    max_connections: int | None,
    wait_for_connection_s: float | None,
    **options: Any,
) -> Redis:
    master = _master_options(settings.redis_url)
    ssl = master.pop("ssl", False)
    pool_options: dict[str, Any] = {
        "connection_class": HiredisSentinelSslConnection if ssl else HiredisSentinelConnection,
        "connection_pool_class": SentinelConnectionPool,
    }
    if max_connections is not None:
        pool_options["max_connections"] = max_connections
    if wait_for_connection_s is not None:
        pool_options["connection_pool_class"] = BlockingSentinelConnectionPool
        pool_options["max_connections"] = max_connections or 50
        pool_options["timeout"] = wait_for_connection_s
    sentinel = EngineSentinel(  # type: ignore[no-untyped-call]  # redis-py: unannotated
        settings.redis_sentinel_addresses, sentinel_kwargs=_sentinel_options(settings, options), **master, **options
    )
    client: Redis = sentinel.master_for(settings.redis_sentinel_master, redis_class=client_class, **pool_options)
    return client


def _master_options(url: str) -> dict[str, Any]:
    """What REDIS_URL says besides where: username, password, database, TLS and its query options. The
    address is the sentinels' to give."""
    options: dict[str, Any] = dict(parse_url(url))
    for where in ("host", "port", "path"):
        options.pop(where, None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return options


def _sentinel_options(settings: Settings, options: dict[str, Any]) -> dict[str, Any]:
    """How to talk to the sentinels themselves: their own password, and short timeouts (see
    SENTINEL_TIMEOUT_S) unless the caller asked for shorter ones."""
    timeouts = {
        name: min(SENTINEL_TIMEOUT_S, options.get(name) or SENTINEL_TIMEOUT_S)
        for name in ("socket_timeout", "socket_connect_timeout")
    }
    if settings.redis_sentinel_password:
        return {**timeouts, "password": settings.redis_sentinel_password}
    return timeouts


def sync_sentinel_master(settings: Settings, **options: Any) -> sync_redis.Redis:
    """`sentinel_master` for the blocking clients."""
    master = _master_options(settings.redis_url)
    connection_class = SyncSentinelSslConnection if master.pop("ssl", False) else SyncSentinelConnection
    sentinel = SyncEngineSentinel(  # type: ignore[no-untyped-call]  # redis-py: unannotated
        settings.redis_sentinel_addresses, sentinel_kwargs=_sentinel_options(settings, options), **master, **options
    )
    client: sync_redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]  # redis-py: unannotated
        settings.redis_sentinel_master, connection_class=connection_class
    )
    return client
