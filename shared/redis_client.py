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

Build clients with `redis_client(url, ...)` at a service's edge; nothing else needs to know.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

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


_HIREDIS_VARIANT = {
    Connection: HiredisTcpConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
    SSLConnection: HiredisSslConnection,
}


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
    url: str,
    *,
    max_connections: int | None = None,
    wait_for_connection_s: float | None = None,
    auto_pipeline: bool = False,
    single_connection: bool = False,
    **options: Any,
) -> Redis:
    """A client for `url` with hiredis command packing. `max_connections` bounds the pool; with
    `wait_for_connection_s`, a caller waits that long for a free connection instead of failing at once.
    `auto_pipeline` gives an `AutoPipelineRedis`; `single_connection` a client that keeps one connection
    for itself (for a loop that sends one command after another, e.g. a stream reader)."""
    if wait_for_connection_s is not None:
        pool: ConnectionPool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections or 50, timeout=wait_for_connection_s, **options
        )
    else:
        pool = ConnectionPool.from_url(url, max_connections=max_connections, **options)
    pool.connection_class = _HIREDIS_VARIANT.get(pool.connection_class, pool.connection_class)
    client_class = AutoPipelineRedis if auto_pipeline else Redis
    if single_connection:
        return client_class(connection_pool=pool, single_connection_client=True)
    return client_class.from_pool(pool)
