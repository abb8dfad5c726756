"""Helpers to place orders straight into Redis (as the API would) and to wait on their fate."""

from __future__ import annotations

import asyncio
import time

import orjson
from redis.asyncio import Redis

from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus, is_terminal
from shared.domain.orders import Order, OrderRequest, accept
from shared.execution.messages import execute_order_message
from shared.store.order_store import OrderState, OrderStore


def make_store(redis: Redis) -> OrderStore:
    return OrderStore(redis, retention_s=3600, idempotency_ttl_s=3600)


async def place_market_order(store: OrderStore, *, owner: str | None = None, **fields) -> Order:
    body = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5", **fields}
    order = accept(OrderRequest.model_validate(body), owner=owner)
    first = OrderEvent(order.order_id, 1, OrderStatus.PENDING, order.type.value)
    await store.create(order, first, message=execute_order_message(order.order_id))
    return order


async def wait_for(store: OrderStore, order: Order, statuses=None, timeout: float = 30) -> OrderState:
    """Poll until the order reaches one of `statuses` (default: any terminal one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await store.load(order.order_id)
        if state and (state.status in statuses if statuses else is_terminal(state.status)):
            return state
        await asyncio.sleep(0.02)
    raise TimeoutError(f"order {order.order_id} is {state.status if state else None} after {timeout}s")


async def event_messages(store: OrderStore, order: Order) -> list[dict]:
    return [orjson.loads(raw) for raw in await store.events(order.order_id)]


def assert_gapless_and_legal(messages: list[dict]) -> None:
    from shared.domain.lifecycle import can_transition

    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    previous = None
    for message in messages:
        status = OrderStatus(message["status"])
        assert can_transition(previous, status), f"{previous} -> {status}"
        previous = status


async def _place_resting(store: OrderStore, body: dict, resting_place) -> Order:
    """A resting order accepted as the API accepts one: pending, then waiting where `resting_place` says."""
    order = accept(OrderRequest.model_validate(body))
    first = OrderEvent(order.order_id, 1, OrderStatus.PENDING, order.type.value)
    waiting = OrderEvent(order.order_id, 2, OrderStatus.WAITING, order.type.value)
    await store.create(order, first, resting=(waiting, resting_place(order)))
    return order


async def place_limit_order(store: OrderStore, limit_price: str, **fields) -> Order:
    from shared.store.limit_book import resting_place

    body = {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": limit_price, **fields}
    return await _place_resting(store, body, resting_place)


async def place_sniper_order(store: OrderStore, trigger: dict, **fields) -> Order:
    from shared.store.sniper_book import resting_place

    body = {"type": "sniper", "tokenIn": "SOL", "tokenOut": "WIF", "amount": "0.1", "trigger": trigger, **fields}
    return await _place_resting(store, body, resting_place)


async def place_conditional_order(store: OrderStore, order_type: str, pair: str = "SOL-USDC", **fields) -> Order:
    """A stop, trailing_stop or oco order (fields as the request spells them), resting as the API places it."""
    from shared.store.conditional_book import resting_place

    token_in, token_out = pair.split("-")
    body = {"type": order_type, "tokenIn": token_in, "tokenOut": token_out, "amount": "1", **fields}
    return await _place_resting(store, body, resting_place)


async def cancel_resting(store: OrderStore, order: Order) -> OrderState:
    """Cancel a resting order the way DELETE /api/orders/{id} does (ClaimLost if a trigger took it first)."""
    from shared.store.order_store import RestingPlace

    state = await store.load(order.order_id)
    assert state is not None and state.status is OrderStatus.WAITING
    event = OrderEvent(order.order_id, state.seq + 1, OrderStatus.CANCELLED, order.type.value)
    return await store.append(state, event, claim=RestingPlace.from_fields(state.fields))
