"""The asyncio Redis clients every service builds: C command packing, and optional automatic pipelining.

Two costs dominate a service that talks to Redis a few times per order, and neither is Redis's:

* **Packing.** redis-py's asyncio connection packs every command in pure Python; ours pack with hiredis
  (shared/redis_packing.py).
* **Round trips.** Each awaited command takes a pooled connection, arms a timeout, writes, waits, parses
  and gives the connection back, at a client CPU cost well above packing's. When hundreds of
  orders are in flight, their commands arrive at the same moment anyway. `AutoPipelineRedis` sends every
  command issued in one event-loop turn as one pipeline (as ioredis's `enableAutoPipelining` does), so the
  per-round-trip cost is paid once per turn instead of once per command.

And one decision every client shares: **where Redis is.** With `REDIS_SENTINELS` unset it is `REDIS_URL`'s
server; with it set, the master the sentinels name, followed through failovers (shared/redis_sentinel.py);
with `REDIS_CLUSTER`, the primary of each command's slot in the cluster `REDIS_URL` is a node of
(shared/redis_cluster.py, shared/redis_slot_client.py).

Build clients with `redis_client(settings, ...)` (asyncio) or `sync_redis_client(settings, ...)` (blocking) at
a service's edge; nothing else needs to know. A plain URL in place of the settings means that server, no
sentinels (tests and tools that were handed one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import redis as sync_redis
from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.cluster import RedisCluster
from redis.exceptions import ClusterDownError, ReadOnlyError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.redis_cluster import ClusterRedis
from shared.redis_packing import HIREDIS_VARIANT
from shared.redis_replicas import (
    AcknowledgedRedis,
    ReplicaCount,
    blocking_sentinel_counter,
    online_replicas,
    sentinel_counter,
)
from shared.redis_sentinel import sentinel_master, sync_sentinel_master
from shared.redis_slot_client import SlotPrimaryPool, slot_client
from shared.settings import Settings, redacted

#: What a caller that loops (a service loop, a retry, the CLI) treats as "Redis cannot serve us right now,
#: try again": the connection failed or timed out, or the server we reached is a replica (`READONLY`: a
#: demoted master, before its connection was dropped), or a cluster cannot serve the slot yet (`CLUSTERDOWN`,
#: `TRYAGAIN`) — a failover in progress, never the command's fault.
#: `ReadOnlyError` is a `ResponseError`, not a `ConnectionError`, so it must be named; a Sentinel-managed
#: client turns it into a `ConnectionError` itself, a plain one does not.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
    OSError,
)

#: How long a client waits for any reply before it gives up on the connection: redis-py's default (5 s),
#: named here because a blocking read (XREAD BLOCK, BLPOP) must ask Redis for less, or the client gives up
#: first and reports a timeout for a read that was only waiting for work.
SOCKET_TIMEOUT_S = 5.0
#: The longest a blocking read of the engine waits, well inside SOCKET_TIMEOUT_S.
MAX_BLOCK_S = 2.0

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


class AutoPipelineRedis(AcknowledgedRedis):
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
            return await super().execute_command(*args, **options)
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
            result = await super().execute_command(*args, **options)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, whatever it is
            _settle(reply, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            _settle(reply, result)

    async def _send_pipeline(self, batch: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]]) -> None:
        pipe = self.pipeline(transaction=False)  # with acknowledged writes, one WAIT for the whole batch
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
    acknowledged_writes: bool = True,
    **options: Any,
) -> AcknowledgedRedis:
    """An asyncio client of the Redis `source` names (see the module's docstring), with hiredis command
    packing. `max_connections` bounds the pool; with `wait_for_connection_s`, a caller waits that long for a
    free connection instead of failing at once. `auto_pipeline` gives an `AutoPipelineRedis`;
    `single_connection` a client that keeps one connection for itself (for a loop that sends one command
    after another, e.g. a stream reader). Its writes are acknowledged by the replicas the settings ask for
    (shared/redis_replicas.py) unless `acknowledged_writes` is False: for writes a failover may lose
    (prices, the next tick rewrites them)."""
    client_class: type[AcknowledgedRedis] = AutoPipelineRedis if auto_pipeline else AcknowledgedRedis
    options.setdefault("socket_timeout", SOCKET_TIMEOUT_S)
    if isinstance(source, Settings) and source.redis_cluster:
        settings = source

        def node_client(url: str) -> AcknowledgedRedis:
            # One primary's client, as a single server's would be; `single_connection` is dropped: the
            # router sends to several servers, and a blocking read holds one node connection anyway.
            options.setdefault("socket_connect_timeout", SOCKET_TIMEOUT_S)
            node = redis_client(
                url,
                max_connections=max_connections,
                wait_for_connection_s=wait_for_connection_s,
                auto_pipeline=auto_pipeline,
                **options,
            )
            if acknowledged_writes:
                node.replica_count = ReplicaCount.from_settings(settings, _online_replicas_of(node))
            return node

        return ClusterRedis(source.redis_url, node_client)
    if isinstance(source, Settings) and source.redis_sentinels:
        pool: ConnectionPool = sentinel_master(
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
        pool.connection_class = HIREDIS_VARIANT.get(pool.connection_class, pool.connection_class)
    if single_connection:
        client = client_class(connection_pool=pool, single_connection_client=True)
    else:
        client = cast(AcknowledgedRedis, client_class.from_pool(pool))  # redis-py types it as its base class
    if acknowledged_writes and isinstance(source, Settings):
        client.replica_count = replica_count(source, pool)
    return client


def _online_replicas_of(node: AcknowledgedRedis) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        return online_replicas(await node.info("replication"))

    return count


def replica_count(settings: Settings, pool: Any) -> ReplicaCount | None:
    """How many replicas the writes and barriers of a client of `pool` wait for (None: none, ever)."""
    if settings.redis_cluster and isinstance(pool, SlotPrimaryPool):
        client = sync_redis.Redis(connection_pool=pool)
        return ReplicaCount.from_settings(settings, lambda: online_replicas(client.info("replication")))
    if not settings.redis_sentinels:
        return ReplicaCount.from_settings(settings, None)
    counter = sentinel_counter(pool) if isinstance(pool, ConnectionPool) else blocking_sentinel_counter(pool)
    return ReplicaCount.from_settings(settings, counter)


def sync_redis_client(source: Settings | str, *, slot_of: str | None = None, **options: Any) -> sync_redis.Redis:
    """A blocking client of the Redis `source` names (dramatiq's broker, db-sync, the metrics scrapes);
    Sentinel-managed like `redis_client`'s when the settings name sentinels. On a cluster, the client of the
    primary that serves the slot of the key `slot_of` (shared/redis_slot_client.py), or without one, redis-py's
    own cluster client (reads that span slots: the scrapes)."""
    if isinstance(source, Settings) and source.redis_cluster:
        if slot_of is not None:
            return slot_client(source.redis_url, slot_of, **options)
        return cast(sync_redis.Redis, RedisCluster.from_url(source.redis_url, **options))
    if isinstance(source, Settings) and source.redis_sentinels:
        return sync_sentinel_master(source, **options)
    url = source.redis_url if isinstance(source, Settings) else source
    return sync_redis.Redis.from_url(url, **options)


def redis_location(source: Settings | str) -> str:
    """Where the clients of `source` go, for a message: no password, ever."""
    if isinstance(source, Settings) and source.redis_sentinels:
        sentinels = ",".join(f"{host}:{port}" for host, port in source.redis_sentinel_addresses)
        return f"the master {source.redis_sentinel_master!r} of sentinels {sentinels}"
    return redacted(source.redis_url if isinstance(source, Settings) else source)
