"""Dead letters made the way dramatiq makes them, without waiting for a worker to exhaust its retries."""

from __future__ import annotations

import time
from decimal import Decimal
from uuid import UUID

import dramatiq
import orjson
from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.execution.async_worker import attempt_of
from shared.execution.executor import OrderExecutor
from shared.execution.messages import execute_order_message
from shared.store.leases import OrderLeases
from shared.store.order_store import OrderStore
from shared.venues.base import Dex
from shared.venues.ledger import RedisLedger
from shared.venues.simulated import SimConfig, SimulatedVenue, build_swap_transaction
from tests.support.orders import make_store, place_market_order

SIM = SimConfig(seed="dead-letter-tests", epoch=1_700_000_000.0, latency_scale=Decimal(0), failure_rate=Decimal(0))
TRACEBACK = "Traceback (most recent call last):\n  ...\nshared.venues.base.VenueUnavailable: raydium quote timeout\n"


async def queued_message_id(redis: Redis, order_id: UUID) -> str:
    for message_id, data in (await redis.hgetall(redis_keys.dramatiq_messages(0))).items():
        if orjson.loads(data)["args"] == [str(order_id)]:
            return message_id.decode()
    raise LookupError(f"no queued message for {order_id}")


async def enqueue_execution(redis: Redis, order_id: UUID) -> str:
    """An execution message for an order that has none queued (e.g. a resting order, once triggered)."""
    message = execute_order_message(order_id)
    await redis.hset(redis_keys.dramatiq_messages(0), message.redis_message_id, message.data)
    await redis.rpush(redis_keys.dramatiq_queue(0), message.redis_message_id)
    return message.redis_message_id


async def dead_letter(redis: Redis, order_id: UUID, *, retries: int = 2, at_ms: int | None = None) -> str:
    """Move the order's queued execution message to the dead-letter queue as dramatiq's `nack` does (after
    the Retries middleware counted `retries` and kept the traceback of the delivery before the last)."""
    message_id = await queued_message_id(redis, order_id)
    message = orjson.loads(await redis.hget(redis_keys.dramatiq_messages(0), message_id))
    message["options"].update(retries=retries, traceback=TRACEBACK)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lrem(redis_keys.dramatiq_queue(0), 0, message_id)
        pipe.hdel(redis_keys.dramatiq_messages(0), message_id)
        pipe.zadd(redis_keys.dramatiq_dead_letters(0), {message_id: at_ms or int(time.time() * 1000)})
        pipe.hset(redis_keys.dramatiq_dead_letter_messages(0), message_id, orjson.dumps(message))
        await pipe.execute()
    return message_id


async def fail(store: OrderStore, order_id: UUID, attempt: int = 3) -> None:
    """Persist `failed` as the executor does on the last attempt."""
    state = await store.load(order_id)
    event = OrderEvent(
        order_id,
        state.seq + 1,
        OrderStatus.FAILED,
        state.order.type.value,
        attempt=attempt,
        error="venue_unavailable",
        error_message=f"gave up after {attempt} attempts: every venue failed",
    )
    await store.append(state, event)


def in_process_executor(redis: Redis, store: OrderStore, venue_class=SimulatedVenue) -> OrderExecutor:
    ledger = RedisLedger(redis)
    venues = {dex: venue_class(dex, SIM, ledger) for dex in Dex}
    return OrderExecutor(store, OrderLeases(redis, ttl_ms=5000), venues, build_swap_transaction, max_attempts=3)


async def run_queued(redis: Redis, executor: OrderExecutor) -> list[str]:
    """Deliver every queued execution message once, in order, as a worker would; their order ids."""
    delivered = []
    while (message_id := await redis.lpop(redis_keys.dramatiq_queue(0))) is not None:
        data = await redis.hget(redis_keys.dramatiq_messages(0), message_id)
        message = dramatiq.Message.decode(data)
        await executor.execute(UUID(message.args[0]), attempt_of(message))
        await redis.hdel(redis_keys.dramatiq_messages(0), message_id)
        delivered.append(message.args[0])
    return delivered


async def failed_dead_letter(redis: Redis, **fields):
    """A market order that failed for good and whose message was dead-lettered, as the worker leaves it."""
    store = make_store(redis)
    order = await place_market_order(store, **fields)
    await fail(store, order.order_id)
    await dead_letter(redis, order.order_id)
    return order
