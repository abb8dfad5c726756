"""An asyncio client of a Redis Cluster that keeps what the engine's single-server clients give it.

redis-py's own `RedisCluster` routes commands well, but it picks a pooled connection per command. A write
acknowledged by replicas (`WAIT`, shared/redis_replicas.py) must be followed by its `WAIT` on the very same
connection, and automatic pipelining (shared/redis_client.py) wants every command of one event-loop turn on one
connection per server. So this client is a router: one ordinary client per primary (an `AcknowledgedRedis` or
`AutoPipelineRedis`, built by the caller's factory, hence with hiredis packing, acknowledged writes and
pipelining), and a slot map saying which primary serves each of the 16,384 hash slots.

- A command goes to the primary of its keys' slot. The engine names one slot per command (docs/sharding.md);
  a command naming two is refused here, as Redis Cluster would refuse it, before it is sent.
- Keyless commands: `SCRIPT` and `FLUSHDB`/`FLUSHALL` go to every primary (a script is then loaded where its
  `EVALSHA` will run); `INFO` asks every primary and answers with the fullest one's reply (what a memory guard
  needs); the rest go to one primary.
- `MOVED` (a slot served elsewhere now: resharding, or a failover this client has not seen) updates the map
  and sends the command again to the new primary: Redis did not run it. `ASK` sends it once to the slot's
  importing primary, after `ASKING`.
- A primary that cannot be reached, or a cluster that answers `CLUSTERDOWN`, fails the command as Redis being
  away (the callers' ride-out loops retry it) and has the map read again from any node that answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from loguru import logger
from redis.asyncio import ConnectionPool
from redis.asyncio.client import Pipeline
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import AskError, ClusterCrossSlotError, ClusterDownError, MovedError, RedisError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.domain.partitions import all_partitions, tag
from shared.redis_replicas import AcknowledgedRedis, command_name

#: The map is read again at most this often, however many commands find it stale at once.
REFRESH_MIN_INTERVAL_S = 0.1
#: How many times one command follows MOVED/ASK before giving up (a slot moving twice under it is rare).
MAX_REDIRECTS = 3

#: Commands whose keys are every argument after the name.
ALL_KEYS = frozenset({"DEL", "UNLINK", "EXISTS", "TOUCH", "MGET", "WATCH"})
#: Commands whose keys are every argument but the last (a timeout).
BLOCKING_POPS = frozenset({"BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"})
#: Commands with KEYS counted in their third argument.
SCRIPTS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
#: Commands that name no key.
KEYLESS = frozenset(
    {
        "PING", "INFO", "SCRIPT", "WAIT", "PUBLISH", "TIME", "CLIENT", "CONFIG", "DBSIZE", "FLUSHDB", "FLUSHALL",
        "COMMAND", "CLUSTER", "ECHO", "HELLO", "AUTH", "READONLY", "READWRITE", "ROLE", "LASTSAVE", "SLOWLOG",
        "LATENCY", "DEBUG", "FUNCTION", "SELECT", "ASKING", "MULTI", "EXEC", "DISCARD", "UNWATCH",
    }
)  # fmt: skip
#: Keyless commands every primary must run (each holds its own scripts and data).
ON_EVERY_PRIMARY = frozenset({"SCRIPT", "FLUSHDB", "FLUSHALL"})

Address = tuple[str, int]
#: Builds the client of one primary from its URL (shared/redis_client.py passes its own options along).
NodeFactory = Callable[[str], AcknowledgedRedis]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def command_keys(args: Sequence[Any]) -> list[Any]:
    """The keys a command names (none for a keyless one)."""
    name = command_name(args)
    if name in KEYLESS or len(args) < 2:
        return []
    if name in SCRIPTS:
        return list(args[3 : 3 + int(args[2])])
    if name in ALL_KEYS:
        return list(args[1:])
    if name in BLOCKING_POPS:
        return list(args[1:-1])
    if name in ("XREAD", "XREADGROUP"):
        after = [_text(arg).upper() for arg in args].index("STREAMS") + 1
        streams = args[after:]
        return list(streams[: len(streams) // 2])
    if name == "BLMOVE" or name == "LMOVE" or name == "RPOPLPUSH" or name == "BRPOPLPUSH":
        return list(args[1:3])
    return [args[1]]


def slot_of(args: Sequence[Any]) -> int | None:
    """The one slot a command's keys are in (None: keyless); ClusterCrossSlotError if they span two."""
    slots = {key_slot(key if isinstance(key, bytes) else str(key).encode()) for key in command_keys(args)}
    if len(slots) > 1:
        raise ClusterCrossSlotError(f"{command_name(args)} names keys of {len(slots)} hash slots")
    return next(iter(slots), None)


def partition_slot_ranges(partitions: int, primaries: int) -> list[tuple[int, int]]:
    """Contiguous slot ranges, one per primary in order, covering every slot, that give each primary as many of
    the first `partitions` partitions as they can (each partition is one slot: its tag's). A cluster made with
    equal ranges gives three primaries 1, 1 and 4 of six partitions: the tags' slots are not spread evenly."""
    if partitions < primaries:  # some primaries serve no partition whatever the ranges: equal ones
        bounds = [i * REDIS_CLUSTER_HASH_SLOTS // primaries for i in range(primaries + 1)]
        return [(bounds[i], bounds[i + 1] - 1) for i in range(primaries)]
    slots = sorted(key_slot(tag(partition).encode()) for partition in all_partitions(partitions))
    starts = [0]
    for primary in range(1, primaries):
        first = primary * partitions // primaries  # the first partition (in slot order) of this primary
        starts.append((slots[first - 1] + slots[first]) // 2 + 1)
    ends = [start - 1 for start in starts[1:]] + [REDIS_CLUSTER_HASH_SLOTS - 1]
    return list(zip(starts, ends, strict=True))


def slot_map(reply: Iterable[Sequence[Any]], asked_host: str) -> list[Address | None]:
    """Each slot's primary, from a `CLUSTER SLOTS` reply got from `asked_host` (None where no primary serves
    it). An empty host is the one asked (a node that has met no other may not know its own address); `?`, an
    endpoint the node does not know, serves nothing we could reach."""
    owners: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    for start, end, primary, *_replicas in reply:
        host = _text(primary[0]) or asked_host
        if host == "?":
            continue
        address = (host, int(primary[1]))
        for slot in range(int(start), int(end) + 1):
            owners[slot] = address
    return owners


class _NoConnections(ConnectionPool):
    """The router's own pool, which must never connect: every command goes through a node's client. (A default
    pool would reach localhost:6379, some other Redis, without a word.)"""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a ClusterRedis sends every command through the client of its slot's primary")


class ClusterRedis(AcknowledgedRedis):
    """An asyncio Redis client of a whole cluster, routing each command to its slot's primary (see the module's
    docstring). Made by `shared.redis_client.redis_client` when the settings say `REDIS_CLUSTER`."""

    def __init__(self, seed_url: str, node_client: NodeFactory) -> None:
        super().__init__(connection_pool=_NoConnections())
        self.seed_url = seed_url
        parts = urlsplit(seed_url)
        self._scheme, self._userinfo, self._db_path = parts.scheme, parts.netloc.rpartition("@")[0], parts.path
        self._seeds: list[Address] = [(parts.hostname or "127.0.0.1", parts.port or 6379)]
        self._node_client = node_client
        self._nodes: dict[Address, AcknowledgedRedis] = {}
        self._slots: list[Address | None] = []
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        self._stale_at = 0.0

    # --- the map -------------------------------------------------------------------------------------------
    def node(self, address: Address) -> AcknowledgedRedis:
        client = self._nodes.get(address)
        if client is None:
            userinfo = f"{self._userinfo}@" if self._userinfo else ""
            client = self._nodes[address] = self._node_client(
                f"{self._scheme}://{userinfo}{address[0]}:{address[1]}{self._db_path}"
            )
        return client

    @property
    def primaries(self) -> list[Address]:
        return sorted({address for address in self._slots if address is not None})

    async def refresh(self, *, force: bool = False) -> None:
        """Read the slot map from the first node that answers (those it named last, then the seed)."""
        if self._refreshing is None or self._refreshing.done():
            if not force and time.monotonic() - self._refreshed_at < REFRESH_MIN_INTERVAL_S and self._slots:
                return
            self._refreshing = asyncio.ensure_future(self._read_map())
        await asyncio.shield(self._refreshing)

    async def _read_map(self) -> None:
        failures: list[str] = []
        for address in [*self.primaries, *self._seeds, *self._nodes]:
            try:
                reply = await self.node(address).execute_command("CLUSTER SLOTS")
            except (RedisError, OSError) as exc:
                failures.append(f"{address[0]}:{address[1]} {exc!r}")
                continue
            self._slots = slot_map(reply, address[0])
            self._refreshed_at = time.monotonic()
            return
        raise RedisConnectionError(f"no cluster node answered CLUSTER SLOTS: {'; '.join(failures)}")

    async def primary_of(self, slot: int) -> AcknowledgedRedis:
        if not self._slots:
            await self.refresh(force=True)
        address = self._slots[slot]
        if address is None:
            await self.refresh()
            address = self._slots[slot]
            if address is None:
                raise ClusterDownError(f"no primary serves slot {slot}")
        return self.node(address)

    def _moved(self, error: MovedError) -> Address:
        address = (_text(error.host), int(error.port))
        if self._slots:
            self._slots[error.slot_id] = address
        return address

    def mark_stale(self) -> None:
        """A node failed us: read the map again in the background (at most every REFRESH_MIN_INTERVAL_S)."""
        now = time.monotonic()
        if (self._refreshing is None or self._refreshing.done()) and now - self._stale_at >= REFRESH_MIN_INTERVAL_S:
            self._stale_at = now
            self._refreshing = asyncio.ensure_future(self._read_map())
            self._refreshing.add_done_callback(_log_failed_refresh)

    # --- commands --------------------------------------------------------------------------------------------
    async def execute_command(self, *args: Any, **options: Any) -> Any:
        slot = slot_of(args)
        if slot is None:
            return await self._keyless(args, options)
        client = await self.primary_of(slot)
        for _ in range(MAX_REDIRECTS):
            try:
                return await client.execute_command(*args, **options)
            except MovedError as moved:
                client = self.node(self._moved(moved))
            except AskError as ask:
                return await _asking(self.node((_text(ask.host), int(ask.port))), args, options)
            except (ClusterDownError, TryAgainError, RedisConnectionError, OSError):
                self.mark_stale()
                raise
        raise ClusterDownError(f"slot {slot} kept moving")

    async def _keyless(self, args: Sequence[Any], options: dict[str, Any]) -> Any:
        if not self._slots:
            await self.refresh(force=True)
        name = command_name(args)
        targets = self.primaries
        if name in ON_EVERY_PRIMARY or name == "INFO":
            replies = await asyncio.gather(*(self.node(a).execute_command(*args, **options) for a in targets))
            return _fullest(replies) if name == "INFO" else replies[0]
        return await self.node(targets[0]).execute_command(*args, **options)

    async def any_primary(self) -> AcknowledgedRedis:
        if not self._slots:
            await self.refresh(force=True)
        return self.node(self.primaries[0])

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> ClusterPipeline:
        return ClusterPipeline(self, transaction)

    async def barrier(self, key: str | None = None) -> None:
        """`barrier()` (shared/redis_replicas.py) on the primary of `key`'s slot, or without one on every primary:
        what it holds now is on its replicas."""
        if key is not None:
            await (await self.primary_of(key_slot(key.encode()))).barrier()
            return
        if not self._slots:
            await self.refresh(force=True)
        await asyncio.gather(*(self.node(address).barrier() for address in self.primaries))

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await asyncio.gather(*(client.aclose() for client in self._nodes.values()), return_exceptions=True)
        await super().aclose(close_connection_pool)


class ClusterPipeline(Pipeline):
    """A pipeline through `ClusterRedis`: its commands are sent as one pipeline per primary, at once, and the
    replies put back in order. A transaction (MULTI) must name one slot, as on a cluster it must; one that
    starts with WATCH becomes, from the WATCH on, the pipeline of the watched keys' primary."""

    def __init__(self, cluster: ClusterRedis, transaction: bool) -> None:
        super().__init__(cluster.connection_pool, cluster.response_callbacks, transaction, None)
        self.router = cluster
        self._bound: Pipeline | None = None

    async def watch(self, *names: Any) -> Any:  # type: ignore[override]  # as Pipeline.watch
        if self._bound is None:
            slot = slot_of(("WATCH", *names))
            node = await (self.router.primary_of(slot) if slot is not None else self.router.any_primary())
            self._bound = node.pipeline(transaction=self.is_transaction)
        return await self._bound.watch(*names)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._bound is not None:
            return self._bound.execute_command(*args, **kwargs)
        return super().execute_command(*args, **kwargs)

    def multi(self) -> None:
        if self._bound is not None:
            self._bound.multi()  # type: ignore[no-untyped-call]  # redis-py: unannotated
        else:
            super().multi()  # type: ignore[no-untyped-call]

    async def reset(self) -> None:  # type: ignore[override]  # Pipeline.reset, not the RESET command
        if self._bound is not None:
            await self._bound.reset()  # type: ignore[no-untyped-call]  # redis-py: unannotated
            self._bound = None
        await super().reset()  # type: ignore[no-untyped-call]

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self._bound is not None:
            try:
                return await self._bound.execute(raise_on_error)
            finally:
                await self.reset()
        stack, self.command_stack = self.command_stack, []
        scripts, self.scripts = self.scripts, set()
        if not stack:
            return []
        by_node: dict[int, list[int]] = {}
        clients: dict[int, AcknowledgedRedis] = {}
        for index, (args, _options) in enumerate(stack):
            slot = slot_of(args)
            client = await (self.router.primary_of(slot) if slot is not None else self._any_primary())
            clients.setdefault(id(client), client)
            by_node.setdefault(id(client), []).append(index)
        if self.is_transaction and len(by_node) > 1:
            raise ClusterCrossSlotError("a transaction's commands must be on one primary")
        results: list[Any] = [None] * len(stack)

        async def send(node_id: int, indexes: list[int]) -> None:
            pipe = clients[node_id].pipeline(transaction=self.is_transaction)
            pipe.scripts = set(scripts)
            for index in indexes:
                args, options = stack[index]
                pipe.execute_command(*args, **options)
            try:
                replies = await pipe.execute(raise_on_error=False)
            except (ClusterDownError, RedisConnectionError, OSError):
                self.router.mark_stale()
                raise
            for index, reply in zip(indexes, replies, strict=True):
                results[index] = reply

        await asyncio.gather(*(send(node_id, indexes) for node_id, indexes in by_node.items()))
        if raise_on_error:
            for reply in results:
                if isinstance(reply, Exception):
                    if isinstance(reply, (MovedError, ClusterDownError)):
                        self.router.mark_stale()
                    raise reply
        return results

    async def _any_primary(self) -> AcknowledgedRedis:
        return await self.router.any_primary()


async def _asking(client: AcknowledgedRedis, args: Sequence[Any], options: dict[str, Any]) -> Any:
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("ASKING")
    pipe.execute_command(*args, **options)
    _, reply = await pipe.execute()
    return reply


def _fullest(replies: Sequence[Any]) -> Any:
    """Of several primaries' INFO replies, the one using the largest share of its maxmemory (or the most)."""

    def share(info: Any) -> float:
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        return used / limit if limit else used / 2**64

    return max(replies, key=share) if all(isinstance(info, dict) for info in replies) else replies[0]


def _log_failed_refresh(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.debug("cluster map not read: {!r}", exc)
