"""How much work waits on the execution queues (one per partition), read from dramatiq's keys in one round trip."""

from __future__ import annotations

from dataclasses import dataclass

import redis as sync_redis
import redis.asyncio
from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.partitions import all_partitions


@dataclass(frozen=True, slots=True)
class ExecutionBacklog:
    #: Messages waiting for a worker to fetch them.
    ready: int
    #: Retries waiting out their back-off (dramatiq keeps them in the delay queue until their eta).
    delayed: int
    #: Messages whose last attempt failed, kept for an operator (`order-engine dlq`).
    dead_letters: int


def _queue_reads(pipe: sync_redis.client.Pipeline | redis.asyncio.client.Pipeline, partitions: int) -> None:
    for partition in all_partitions(partitions):
        pipe.llen(redis_keys.dramatiq_queue(partition))
        pipe.hlen(f"{redis_keys.dramatiq_delayed(partition)}.msgs")
        pipe.zcard(redis_keys.dramatiq_dead_letters(partition))


def _summed(replies: list[int]) -> ExecutionBacklog:
    """Three readings per partition, in `_queue_reads`'s order, added up."""
    return ExecutionBacklog(ready=sum(replies[0::3]), delayed=sum(replies[1::3]), dead_letters=sum(replies[2::3]))


async def read_backlog(redis: Redis, partitions: int = 1) -> ExecutionBacklog:
    """The backlog of every partition's execution queue, added up."""
    async with redis.pipeline(transaction=False) as pipe:
        _queue_reads(pipe, partitions)
        return _summed(await pipe.execute())


def read_backlog_sync(redis: sync_redis.Redis, partitions: int = 1) -> ExecutionBacklog:
    """`read_backlog` for a blocking client (a metrics scrape in its own thread)."""
    with redis.pipeline(transaction=False) as pipe:
        _queue_reads(pipe, partitions)
        return _summed(pipe.execute())
