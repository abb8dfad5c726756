"""`python -m services.execution_worker`: consumes every partition's execution queue and drives orders to the end.

One process keeps up to WORKER_MAX_IN_FLIGHT orders in flight on one event loop (see
shared/execution/async_worker.py for how that sits on dramatiq), with a dramatiq worker per partition.
"""

from __future__ import annotations

import asyncio
import math
import signal
import threading
from uuid import UUID

import dramatiq
from loguru import logger
from prometheus_client import Gauge
from redis.asyncio import Redis

from shared.domain.partitions import all_partitions
from shared.execution.async_worker import AsyncWorker, LoopAcks, LoopThread, attempt_of, current_message
from shared.execution.broker import build_broker
from shared.execution.executor import OrderExecutor
from shared.execution.messages import EXECUTE_ORDER
from shared.logging import setup_logging
from shared.observability.orders import ExecutionMetrics
from shared.observability.probes import Heartbeat, ServiceProbes, start_probes
from shared.observability.redis_gauges import RedisGauges, execution_backlog
from shared.redis_client import redis_client
from shared.redis_keys import EXECUTION_QUEUE
from shared.service import keep_running
from shared.settings import Settings
from shared.store.leases import OrderLeases
from shared.store.order_store import OrderStore
from shared.venues.base import Dex
from shared.venues.ledger import RedisLedger, shift_ttl_s
from shared.venues.ledger import retention_s as ledger_retention_s
from shared.venues.simulated import SimulatedVenue, build_swap_transaction, load_sim_config


def build_redis(settings: Settings) -> Redis:
    # Hundreds of orders in flight issue their commands together: auto-pipelining sends each event-loop
    # turn's as one round trip, and the bounded pool makes a burst wait for a connection instead of failing.
    return redis_client(settings, max_connections=64, wait_for_connection_s=20, auto_pipeline=True)


#: How often the event loop proves to /health that it runs and reaches Redis (one PING: nothing per order).
WATCHDOG_PERIOD_S = 2.0


async def watchdog(redis: Redis, alive: Heartbeat) -> None:
    """Beat while the loop turns and Redis answers it; a blocked loop stops beating, a lost Redis fails.
    Runs until cancelled, and logs nothing: /health is where it speaks."""

    async def ping() -> None:
        await asyncio.wait_for(redis.ping(), WATCHDOG_PERIOD_S * 2)

    # Whatever stops the ping is what /health should say.
    await keep_running(ping, alive=alive, stop=None, outage=None, catch=(Exception,), rest_s=WATCHDOG_PERIOD_S)


async def build_executor(settings: Settings, redis: Redis, metrics: ExecutionMetrics | None = None) -> OrderExecutor:
    sim = await load_sim_config(redis, settings)
    ledger = RedisLedger(
        redis, ledger_retention_s(settings.order_retention_s), shift_ttl_s(settings.sim_arbitrage_half_life_s)
    )
    logger.info("simulation seed {}, latency x{}, failure rate {}", sim.seed, sim.latency_scale, sim.failure_rate)
    return OrderExecutor(
        OrderStore.from_settings(redis, settings),
        OrderLeases(redis, ttl_ms=settings.order_lease_ms),
        {dex: SimulatedVenue(dex, sim, ledger) for dex in Dex},
        build_swap_transaction,
        max_attempts=settings.max_attempts,
        metrics=metrics,
    )


def declare_actor(broker: dramatiq.Broker, executor: OrderExecutor, settings: Settings) -> None:
    @dramatiq.actor(
        actor_name=EXECUTE_ORDER,
        queue_name=EXECUTION_QUEUE,
        broker=broker,
        max_retries=settings.max_attempts - 1,
        min_backoff=settings.retry_min_backoff_ms,
        max_backoff=settings.retry_max_backoff_ms,
    )
    async def execute_order(order_id: str) -> None:
        await executor.execute(UUID(order_id), attempt_of(current_message.get()))


def main() -> None:
    settings = Settings()
    setup_logging("execution-worker", settings)
    probes = ServiceProbes.for_service("execution-worker", settings)
    server = start_probes("execution-worker", settings, probes)
    loop = LoopThread().start()
    redis = build_redis(settings)
    watching = asyncio.run_coroutine_threadsafe(watchdog(redis, probes.health.heartbeat("event-loop")), loop.loop)
    executor = loop.run(build_executor(settings, redis, ExecutionMetrics(probes.registry)))
    workers = partition_workers(settings, executor, loop, redis)
    gauges = RedisGauges(settings, [execution_backlog(settings.partitions)])
    probes.registry.register(gauges)
    Gauge("engine_execution_in_flight", "Orders this worker is driving now", registry=probes.registry).set_function(
        lambda: sum(worker.in_flight for worker in workers)
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for worker in workers:
        worker.start()
    logger.info(
        "consuming {!r} of {} partitions with up to {} orders in flight",
        EXECUTION_QUEUE,
        settings.partitions,
        settings.worker_max_in_flight,
    )
    stop.wait()
    logger.info("stopping: finishing orders in flight")
    for worker in workers:
        worker.stop(drain_timeout_s=settings.worker_drain_s)
    watching.cancel()
    loop.stop()
    gauges.close()
    if server is not None:
        server.close()
    logger.info("stopped")


def partition_workers(settings: Settings, executor: OrderExecutor, loop: LoopThread, redis: Redis) -> list[AsyncWorker]:
    """One dramatiq worker per partition's queue (a namespace, hence a broker, each: shared/redis_keys.py), on
    one event loop and one executor, splitting WORKER_MAX_IN_FLIGHT between them (orders spread evenly)."""
    per_partition = max(1, math.ceil(settings.worker_max_in_flight / settings.partitions))
    workers = []
    for partition in all_partitions(settings.partitions):
        broker = build_broker(settings, partition)
        declare_actor(broker, executor, settings)
        workers.append(
            AsyncWorker(
                broker,
                loop=loop.loop,
                max_in_flight=per_partition,
                queues={EXECUTION_QUEUE},
                acks=LoopAcks(broker, redis),
            )
        )
    return workers


if __name__ == "__main__":
    main()
