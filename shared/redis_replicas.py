"""Writes that survive a failover: a write counts as done only once the replicas hold it.

Redis replicates asynchronously. A master that dies, or that a manual failover replaced while clients still
wrote to it, takes with it every write its replicas had not received: an order the API already answered
200 for, an execution step a worker went on from. So a client built with acknowledged writes follows each
write, on the same connection and in the same round trip, with `WAIT <n> <timeout>` (Redis's "have n
replicas received everything this connection wrote?"), and its caller sees the write succeed only when n
replicas did. Short of n it raises `NotReplicated`, a `ConnectionError`, which every caller already treats
as "Redis is away for a moment": it retries, and a write that did land after all is seen in the stored state
(every order write is a compare-and-set on its `seq`, every create is keyed by its order id).

How many, `ReplicaCount.required()`:

* With sentinels, every replica this client has seen in sync with the master they name (up, a replica of
  that master, link up) and that they still see up, and at least REDIS_MIN_REPLICA_ACKS, counted again
  every REPLICA_RECOUNT_S and after any shortfall.
  Every replica, not one: Sentinel promotes the replica whose offset it last saw highest, and it may have
  seen that before the write, so only a write every replica holds is surely on the promoted one.
  Seen in sync *once* since the master's last failover, not in sync now: a replica that stops
  replicating without going down is being promoted (or moved to the one that is). Counting only those
  in sync now let the count fall, mid-failover, to the replicas still attached to the old master, or to
  none, and a write there was answered by a replica about to resync from the new master and drop it.
  Counted this way, a master the sentinels are replacing cannot gather its replicas: nothing its stale
  clients write there is ever acknowledged.
  A replica that goes down stops counting once the sentinels see it down (their down-after). A count that
  cannot be taken (no sentinel answers) keeps the last one: waiting for none then would be the same hole.
* Without sentinels, REDIS_MIN_REPLICA_ACKS: 0 (the default) sends no WAIT at all, and a single Redis pays
  nothing.

Readers must not pass on what a failover may take back (the API's event reader to WebSockets, db-sync to
PostgreSQL): an event read from a master that then died unreplicated is written again after the failover,
differently. `barrier()` is one write of no consequence (a PUBLISH nobody listens to) and its WAIT: once
the replicas hold it, they hold everything the master held when it ran, the events read before it included.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis as sync_redis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from shared.settings import Settings

#: How often the number of replicas to wait for is asked of the sentinels again (and at once after a
#: shortfall): often enough that a replica that came back is waited for within a second, rarely enough that
#: the sentinels never notice the cost.
REPLICA_RECOUNT_S = 1.0
#: Where `barrier()` publishes. Nothing subscribes: the PUBLISH is there because Redis replicates it.
BARRIER_CHANNEL = "engine:replication-barrier"

#: Commands that write nothing: only these go without a WAIT. Anything else (scripts included) may write.
READ_ONLY_COMMANDS = frozenset(
    {
        *("GET", "MGET", "STRLEN", "GETRANGE", "EXISTS", "TYPE", "TTL", "PTTL", "SCAN", "KEYS", "DBSIZE"),
        *("HGET", "HMGET", "HGETALL", "HLEN", "HEXISTS", "HKEYS", "HVALS", "HSCAN"),
        *("LRANGE", "LLEN", "LINDEX", "SMEMBERS", "SCARD", "SISMEMBER", "SSCAN"),
        *("ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYSCORE", "ZCARD", "ZCOUNT", "ZSCORE", "ZMSCORE"),
        *("ZRANK", "ZREVRANK", "XRANGE", "XREVRANGE", "XLEN", "XINFO", "XPENDING", "XREAD"),
        *("EVALSHA_RO", "EVAL_RO", "SCRIPT", "PING", "INFO", "TIME", "ROLE", "MEMORY", "OBJECT", "CLIENT"),
        *("CONFIG", "COMMAND", "HELLO", "AUTH", "SELECT", "ECHO", "SLOWLOG", "WAIT", "WAITAOF", "SENTINEL"),
        *("CLUSTER", "READONLY", "ASKING"),
    }
)


class NotReplicated(RedisConnectionError):
    """Fewer replicas than required acknowledged a write in time. It may still have landed on the master (and
    may or may not survive it): a caller retries as after any lost connection, and finds out."""

    def __init__(self, acknowledged: int, required: int) -> None:
        super().__init__(f"{acknowledged} of {required} replicas acknowledged the write in time")
        self.acknowledged = acknowledged
        self.required = required


def command_name(args: Sequence[Any]) -> str:
    """A command's name without its subcommand: redis-py sends `XINFO GROUPS` or `SCRIPT LOAD` as one argument."""
    name = args[0]
    return (name.decode() if isinstance(name, bytes) else str(name)).split(" ", 1)[0].upper()


def writes(commands: Iterable[tuple[Any, ...]]) -> bool:
    return any(command_name(args) not in READ_ONLY_COMMANDS for args in commands)


def in_sync(replica: Mapping[str, Any], master: tuple[str, int]) -> bool:
    """Whether a `SENTINEL REPLICAS` entry (as redis-py parses it) replicates `master` now: up, saying it is a
    replica, of that master, with the link up. Not one that still replicates a master the sentinels just
    replaced, nor that master itself until it is demoted, nor one still syncing."""
    return (
        is_up(replica)
        and not replica.get("is_disconnected")
        and str(replica.get("role-reported")) == "slave"
        and str(replica.get("master-link-status")) == "ok"
        and (str(replica.get("master-host")), int(replica.get("master-port") or 0)) == master
    )


def is_up(replica: Mapping[str, Any]) -> bool:
    """Not judged down by the sentinels. A replica the sentinels are merely reconnecting to is still up: the
    one being promoted is exactly that, since promoting it drops their links (`CLIENT KILL TYPE normal`)."""
    return not replica.get("is_sdown") and not replica.get("is_odown")


def replicas_in_sync(replicas: Iterable[Mapping[str, Any]], master: tuple[str, int]) -> int:
    return sum(1 for replica in replicas if in_sync(replica, master))


def replicas_to_wait_for(replicas: Iterable[Mapping[str, Any]], master: tuple[str, int], seen_in_sync: set[str]) -> int:
    """How many of `master`'s replicas a write on it waits for: those ever seen in sync with it (recorded in
    `seen_in_sync`, which the caller keeps per master) that are up (see the module's docstring)."""
    listed = list(replicas)
    seen_in_sync.update(str(replica.get("name")) for replica in listed if in_sync(replica, master))
    return sum(1 for replica in listed if str(replica.get("name")) in seen_in_sync and is_up(replica))


@dataclass
class ReplicaCount:
    """How many replicas each write waits for: the minimum, or (with `counter`, the sentinels') the number
    to wait for, cached for REPLICA_RECOUNT_S. A counter that cannot reach the sentinels keeps its last count.
    `counter` is a coroutine function for the asyncio clients, a plain one for the blocking clients."""

    min_acks: int
    timeout_ms: int
    counter: Callable[[], Awaitable[int]] | Callable[[], int] | None = None
    _counted: int = 0
    _due_at: float = 0.0

    @classmethod
    def from_settings(
        cls, settings: Settings, counter: Callable[[], Awaitable[int]] | Callable[[], int] | None
    ) -> ReplicaCount | None:
        """None when no write could ever wait: no sentinels to count replicas, and no minimum."""
        if counter is None and settings.redis_min_replica_acks == 0:
            return None
        return cls(settings.redis_min_replica_acks, settings.redis_replica_ack_timeout_ms, counter)

    async def required(self) -> int:
        if self.counter is not None and self._recount_due():
            try:
                counted = self.counter()
                self._counted = await counted if isinstance(counted, Awaitable) else counted
            except (RedisError, OSError):
                self._sentinels_away()
        return max(self.min_acks, self._counted)

    def required_blocking(self) -> int:
        """`required` for the blocking clients (a plain `counter`)."""
        if self.counter is not None and self._recount_due():
            try:
                counted = self.counter()
                assert isinstance(counted, int), "a blocking client's counter must be a plain function"
                self._counted = counted
            except (RedisError, OSError):
                self._sentinels_away()
        return max(self.min_acks, self._counted)

    def check(self, acknowledged: object, required: int) -> None:
        """Raise NotReplicated unless `acknowledged` (WAIT's reply) reaches `required`; a shortfall recounts.
        A WAIT refused (sent to a replica, say) is a shortfall too: nothing says the replicas hold the write."""
        if isinstance(acknowledged, Exception):
            self._due_at = 0.0
            raise NotReplicated(0, required) from acknowledged
        if not isinstance(acknowledged, int) or acknowledged < required:
            self._due_at = 0.0
            raise NotReplicated(acknowledged if isinstance(acknowledged, int) else 0, required)

    def _recount_due(self) -> bool:
        now = time.monotonic()
        if now < self._due_at:
            return False
        self._due_at = now + REPLICA_RECOUNT_S
        return True

    def _sentinels_away(self) -> None:
        # Ask again soon (not at once: every write would ask every sentinel); meanwhile wait for as many as last time.
        self._due_at = time.monotonic() + REPLICA_RECOUNT_S / 10


class NoCount(RedisError):
    """No sentinel answered with a view of the master the client writes to: the count keeps its last value."""


class ReplicasSeen:
    """What a counter has seen in sync with each master, per era: a master's address and the sentinels'
    config epoch for it, which every failover raises. A replica seen in sync with a master in an earlier era
    (before a failover took it away and another brought it back) says nothing about this one."""

    def __init__(self) -> None:
        self._by_era: dict[tuple[str, int, int], set[str]] = {}

    def count(self, master: tuple[str, int], state: Mapping[str, Any], replicas: Iterable[Mapping[str, Any]]) -> int:
        """`replicas_to_wait_for` `master`, from one sentinel's `SENTINEL MASTER` (`state`) and `SENTINEL
        REPLICAS`; NoCount if that sentinel names another master (it has not seen the failover yet, or has
        seen one the client has not)."""
        if (str(state.get("ip")), int(state.get("port") or 0)) != master:
            raise NoCount(f"this sentinel names {state.get('ip')}:{state.get('port')}, not {master[0]}:{master[1]}")
        era = (*master, int(state.get("config-epoch") or 0))
        return replicas_to_wait_for(replicas, master, self._by_era.setdefault(era, set()))


def sentinel_counter(pool: Any) -> Callable[[], Awaitable[int]]:
    """Counts, for an asyncio sentinel-managed `pool`, the replicas a write on the master the sentinels name
    now waits for (`ReplicasSeen`), as the first sentinel that answers for that master sees them. Asking
    where the master is also moves the pool there if it moved: the writes counted for go to the master they
    were counted against. What it has seen lives as long as the pool: a process started mid-failover has
    seen nothing yet, and counts only what is in sync by then."""
    seen = ReplicasSeen()

    async def count() -> int:
        master = await pool.get_master_address()
        for sentinel in pool.sentinel_manager.sentinels:
            try:
                state = await sentinel.sentinel_master(pool.service_name)
                return seen.count(master, state, await sentinel.sentinel_slaves(pool.service_name))
            except (RedisError, OSError):
                continue
        raise NoCount(f"no sentinel answered for {master[0]}:{master[1]}")

    return count


def blocking_sentinel_counter(pool: Any) -> Callable[[], int]:
    """`sentinel_counter` for a blocking client's pool."""
    seen = ReplicasSeen()

    def count() -> int:
        master = pool.get_master_address()
        for sentinel in pool.sentinel_manager.sentinels:
            try:
                state = sentinel.sentinel_master(pool.service_name)
                return seen.count(master, state, sentinel.sentinel_slaves(pool.service_name))
            except (RedisError, OSError):
                continue
        raise NoCount(f"no sentinel answered for {master[0]}:{master[1]}")

    return count


class AcknowledgedPipeline(Pipeline):
    """A pipeline whose writes are acknowledged by the replicas before `execute` returns (see the module's
    docstring): a WAIT rides at the end of the same round trip. A transaction (MULTI/EXEC, where WAIT
    cannot wait) is followed by a `barrier()` instead."""

    replica_count: ReplicaCount | None = None

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        count = self.replica_count
        if count is None or not writes(args for args, _ in self.command_stack):
            return await super().execute(raise_on_error)
        if self.is_transaction or self.explicit_transaction:
            replies = await super().execute(raise_on_error)
            await _barrier(self.connection_pool, self.response_callbacks, count)
            return replies
        required = await count.required()
        if required == 0:
            return await super().execute(raise_on_error)
        self.execute_command("WAIT", required, count.timeout_ms)
        replies = await super().execute(raise_on_error=False)
        acknowledged = replies.pop()
        count.check(acknowledged, required)
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies


class AcknowledgedRedis(Redis):
    """An asyncio client whose writes are acknowledged by the replicas before they return, once
    `replica_count` is set (shared/redis_client.py sets it from the settings); a plain client until then."""

    replica_count: ReplicaCount | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.replica_count is None or command_name(args) in READ_ONLY_COMMANDS:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]  # redis-py: unannotated
        async with self.pipeline(transaction=False) as pipe:
            pipe.execute_command(*args, **options)
            (reply,) = await pipe.execute()
        return reply

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = AcknowledgedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.replica_count = self.replica_count
        return pipe

    async def barrier(self, key: str | None = None) -> None:
        """See the module-level `barrier` (`key` matters only to a cluster client)."""
        if self.replica_count is not None:
            await _barrier(self.connection_pool, self.response_callbacks, self.replica_count)


async def barrier(client: Redis, key: str | None = None) -> None:
    """Return once the replicas hold everything `client`'s master held when this ran (NotReplicated if they
    do not in time); at once for a client without acknowledged writes. A cluster client's: the primary of
    `key`'s slot, or every primary without one."""
    if isinstance(client, AcknowledgedRedis):
        await client.barrier(key)


def online_replicas(info: dict[str, Any]) -> int:
    """How many replicas an `INFO replication` reply shows attached and streaming (`state=online`): what a
    cluster primary's writes wait for, as the sentinels' count does on Sentinel."""
    return sum(1 for name, value in info.items() if name.startswith("slave") and _online(value))


def _online(value: Any) -> bool:
    return isinstance(value, dict) and value.get("state") == "online"


async def _barrier(pool: Any, response_callbacks: Any, count: ReplicaCount) -> None:
    required = await count.required()
    if required == 0:
        return
    pipe = Pipeline(pool, response_callbacks, False, None)
    pipe.publish(BARRIER_CHANNEL, b"")
    pipe.execute_command("WAIT", required, count.timeout_ms)
    _, acknowledged = await pipe.execute(raise_on_error=False)
    count.check(acknowledged, required)


def blocking_barrier(client: sync_redis.Redis, count: ReplicaCount | None) -> None:
    """`barrier` for a blocking client."""
    if count is None:
        return
    required = count.required_blocking()
    if required == 0:
        return
    with client.pipeline(transaction=False) as pipe:
        pipe.publish(BARRIER_CHANNEL, b"")
        pipe.execute_command("WAIT", required, count.timeout_ms)  # type: ignore[no-untyped-call]  # redis-py: unannotated
        _, acknowledged = pipe.execute(raise_on_error=False)
    count.check(acknowledged, required)
