"""The asyncio Redis clients every service builds: C command packing, and optional automatic pipelining.

Two costs dominate a service that talks to Redis a few times per order, and neither is Redis's:

* **Packing.** redis-py's asyncio connection packs every command in pure Python, byte string by byte
  string, even when hiredis is installed (the sync client uses `hiredis.pack_command`; redis-py issue
  #4176, PR #4191). Our connections pack with hiredis too, which a profile of the worker shows pays.
* **Round trips.** Each awaited command takes a pooled connection, arms a timeout, writes, waits, parses
  and gives the connection back, at a client CPU cost well above packing's. When hundreds of
  orders are in flight, their commands arrive at the same moment anyway. `AutoPipelineRedis` sends every
  command issued in one event-loop turn as one pipeline (as ioredis's `enableAutoPipelining` does), so the
  per-round-trip cost is paid once per turn instead of once per command.

And one decision every client shares: **where Redis is.** With `REDIS_SENTINELS` unset it is `REDIS_URL`'s
server. With it set, Redis is Sentinel-managed: each client is a sentinel `master_for` client, whose
connections ask the sentinels for the master's address (`GET-MASTER-ADDR-BY-NAME`) whenever they
(re)connect, and whose pool asks again every second while they stay open, so when a failover moves the
master the same client object carries on against the new one. A connection still open to a demoted master
gets `READONLY` on its next write; redis-py's sentinel connection then drops it and raises a
`ConnectionError`, which every caller already treats as "Redis is away for a moment": the next command
reconnects through the sentinels. A plain client's `ReadOnlyError` is in `REDIS_UNAVAILABLE` for the same
reason. `REDIS_URL` then supplies only the master's credentials, database and scheme; the sentinels are
reached over plain TCP, with `REDIS_SENTINEL_PASSWORD` if they have one.

Build clients with `redis_client(settings, ...)` (asyncio) or `sync_redis_client(settings, ...)` (blocking) at
a service's edge; nothing else needs to know. A plain URL in place of the settings means that server, no
sentinels (tests and tools that were handed one).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
import redis as sync_redis
import redis.sentinel as sync_sentinel
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection, parse_url
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.settings import Settings

#: What a caller that loops (a service loop, a retry, the CLI) treats as "Redis cannot serve us right now,
#: try again": the connection failed or timed out, or the server we reached is a replica (`READONLY`: a
#: demoted master, before its connection was dropped) — a failover in progress, never the command's fault.
#: `ReadOnlyError` is a `ResponseError`, not a `ConnectionError`, so it must be named; a Sentinel-managed
#: client turns it into a `ConnectionError` itself, a plain one does not.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)
#: How long a client waits for one sentinel before asking the next: a sentinel answers from memory, so a
#: slow one is a dead or frozen one, and waiting on it would stall every reconnect during a failover.
SENTINEL_TIMEOUT_S = 1.0
#: How often a Sentinel-managed pool asks the sentinels whether the master moved while its connections stay
#: open (see `_FollowsTheMaster`): one query a second per pool costs the sentinels nothing, and bounds how
#: long a client keeps writing to a master the sentinels already replaced.
MASTER_RECHECK_S = 1.0

#: Commands that wait on the server (or hold a connection for themselves): batched, they would hold up
#: every command queued behind them, so the auto-pipelining client sends them on their own connection.
UNBATCHED_COMMANDS = frozenset(
    {
        "BLPOP",
        "BRPOP",
        "BLMOVE",
        "BRPOPLPUSH",
        "BZPOPMIN",
        "BZPOPMAX",
        "BLMPOP",
        "BZMPOP",
        "WAIT",
        "WAITAOF",
        "XREAD",
        "XREADGROUP",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "SSUBSCRIBE",
        "MONITOR",
        "WATCH",
        "MULTI",
        "EXEC",
    }
)


class _HiredisPacking:
    """`pack_command` by hiredis, as redis-py's sync connection does when hiredis is installed."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):  # "SCRIPT LOAD" and friends: the server wants the words apart
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # hiredis takes str, bytes, int and float only: views become bytes, as redis-py does
            args = tuple(bytes(arg) if isinstance(arg, memoryview | bytearray) else arg for arg in args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:  # the same error the pure-Python encoder gives for, say, a None
            raise DataError(str(exc)) from None


class HiredisTcpConnection(_HiredisPacking, Connection):
    pass


class HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


class HiredisSslConnection(_HiredisPacking, SSLConnection):
    pass


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


class HiredisSentinelConnection(_HiredisPacking, _FollowsTheMaster):
    pass


class HiredisSentinelSslConnection(_HiredisPacking, _FollowsTheMaster, SSLConnection):
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


_HIREDIS_VARIANT = {
    Connection: HiredisTcpConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
    SSLConnection: HiredisSslConnection,
}


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


class AutoPipelineRedis(Redis):
    """A client whose commands, issued in the same event-loop turn by any number of tasks, go to Redis as
    one non-transactional pipeline. Each caller still awaits its own reply or its own error; a lost
    connection fails every command of that pipeline, as it would have failed each of them alone.

    Order is kept among commands issued in one turn (they share the pipeline) and, as always, between
    commands one task awaits in turn. Commands of one caller that must run together belong in one Lua
    script, not in a sequence that hopes to share a pipeline.
    """

    _pending: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] | None = None
    #: The loop keeps only weak references to tasks: a sending task must be held until it is done.
    _sending: set[asyncio.Task[None]] | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = args[0].upper() if isinstance(args[0], str) else args[0].decode().upper()
        if name in UNBATCHED_COMMANDS:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]  # redis-py: unannotated
        loop = asyncio.get_running_loop()
        if self._pending is None:
            self._pending = []
            loop.call_soon(self._flush)
        reply = loop.create_future()
        self._pending.append((args, options, reply))
        return await reply

    def _flush(self) -> None:
        batch, self._pending = self._pending or [], None
        if not batch:
            return
        if len(batch) == 1:
            args, options, reply = batch[0]
            task = asyncio.ensure_future(self._send_one(args, options, reply))
        else:
            task = asyncio.ensure_future(self._send_pipeline(batch))
        if self._sending is None:
            self._sending = set()
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_one(self, args: tuple[Any, ...], options: dict[str, Any], reply: asyncio.Future[Any]) -> None:
        try:
            result = await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]  # redis-py: unannotated
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, whatever it is
            _settle(reply, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            _settle(reply, result)

    async def _send_pipeline(self, batch: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]]) -> None:
        pipe = Redis.pipeline(self, transaction=False)
        for args, options, _ in batch:
            pipe.execute_command(*args, **options)
        try:
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # noqa: BLE001 - the connection failed: every command of it did
            for *_, reply in batch:
                _settle(reply, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, reply), result in zip(batch, results, strict=True):
            _settle(reply, result)


def _settle(reply: asyncio.Future[Any], outcome: Any) -> None:
    if reply.done():  # its caller gave up waiting (cancelled): nobody wants the answer
        return
    if isinstance(outcome, asyncio.CancelledError):
        reply.cancel()
    elif isinstance(outcome, BaseException):
        reply.set_exception(outcome)
    else:
        reply.set_result(outcome)


def redis_client(
    source: Settings | str,
    *,
    max_connections: int | None = None,
    wait_for_connection_s: float | None = None,
    auto_pipeline: bool = False,
    single_connection: bool = False,
    **options: Any,
) -> Redis:
    """An asyncio client of the Redis `source` names (see the module's docstring), with hiredis command
    packing. `max_connections` bounds the pool; with `wait_for_connection_s`, a caller waits that long for a
    free connection instead of failing at once. `auto_pipeline` gives an `AutoPipelineRedis`;
    `single_connection` a client that keeps one connection for itself (for a loop that sends one command
    after another, e.g. a stream reader)."""
    client_class = AutoPipelineRedis if auto_pipeline else Redis
    if isinstance(source, Settings) and source.redis_sentinels:
        pool: ConnectionPool = _sentinel_master(
            source,
            client_class,
            max_connections=max_connections,
            wait_for_connection_s=wait_for_connection_s,
            **options,
        ).connection_pool
    else:
        url = source.redis_url if isinstance(source, Settings) else source
        if wait_for_connection_s is not None:
            pool = BlockingConnectionPool.from_url(
                url, max_connections=max_connections or 50, timeout=wait_for_connection_s, **options
            )
        else:
            pool = ConnectionPool.from_url(url, max_connections=max_connections, **options)
        pool.connection_class = _HIREDIS_VARIANT.get(pool.connection_class, pool.connection_class)
    if single_connection:
        return client_class(connection_pool=pool, single_connection_client=True)
    return client_class.from_pool(pool)


def sync_redis_client(source: Settings | str, **options: Any) -> sync_redis.Redis:
    """A blocking client of the Redis `source` names (dramatiq's broker, db-sync, the metrics scrapes);
    Sentinel-managed like `redis_client`'s when the settings name sentinels."""
    if isinstance(source, Settings) and source.redis_sentinels:
        master = _master_options(source.redis_url)
        connection_class = SyncSentinelSslConnection if master.pop("ssl", False) else SyncSentinelConnection
        sentinel = SyncEngineSentinel(  # type: ignore[no-untyped-call]  # redis-py: unannotated
            source.redis_sentinel_addresses, sentinel_kwargs=_sentinel_options(source, options), **master, **options
        )
        client: sync_redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]  # redis-py: unannotated
            source.redis_sentinel_master, connection_class=connection_class
        )
        return client
    url = source.redis_url if isinstance(source, Settings) else source
    return sync_redis.Redis.from_url(url, **options)


def redis_location(source: Settings | str) -> str:
    """Where the clients of `source` go, for a message: no password, ever."""
    if isinstance(source, Settings) and source.redis_sentinels:
        sentinels = ",".join(f"{host}:{port}" for host, port in source.redis_sentinel_addresses)
        return f"the master {source.redis_sentinel_master!r} of sentinels {sentinels}"
    url = source.redis_url if isinstance(source, Settings) else source
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _sentinel_master(
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
