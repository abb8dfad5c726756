"""How much work waits on the execution queue, read from dramatiq's keys in one round trip."""

from __future__ import annotations

from dataclasses import dataclass

import redis as sync_redis
import redis.asyncio
from redis.asyncio import Redis

from shared import redis_keys


@dataclass(frozen=True, slots=True)
class ExecutionBacklog:
    #: Messages waiting for a worker to fetch them.
    ready: int
    #: Retries waiting out their back-off (dramatiq keeps them in the delay queue until their eta).
    delayed: int
    #: Messages whose last attempt failed, kept for an operator (`order-engine dlq`).
    dead_letters: int


def _queue_reads(pipe: sync_redis.client.Pipeline | redis.asyncio.client.Pipeline) -> None:
    pipe.llen(redis_keys.dramatiq_queue())
    pipe.hlen(f"{redis_keys.dramatiq_delayed()}.msgs")
    pipe.zcard(redis_keys.dramatiq_dead_letters())


async def read_backlog(redis: Redis) -> ExecutionBacklog:
    async with redis.pipeline(transaction=False) as pipe:
        _queue_reads(pipe)
        ready, delayed, dead = await pipe.execute()
    return ExecutionBacklog(ready=ready, delayed=delayed, dead_letters=dead)


def read_backlog_sync(redis: sync_redis.Redis) -> ExecutionBacklog:
    """`read_backlog` for a blocking client (a metrics scrape in its own thread)."""
    with redis.pipeline(transaction=False) as pipe:
        _queue_reads(pipe)
        ready, delayed, dead = pipe.execute()
    return ExecutionBacklog(ready=ready, delayed=delayed, dead_letters=dead)
