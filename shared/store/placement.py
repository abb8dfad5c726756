"""Where a newly accepted order goes: a market order to the execution queue, a limit, sniper or conditional
order to its resting place (after a `waiting` event). The same rule the API applies when it accepts an order, as
a pure function, so every path that creates orders (the API, dead-letter replay) places them alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.domain.order_types import CONDITIONAL_TYPES, OrderType
from shared.domain.orders import Order
from shared.execution.messages import execute_order_message
from shared.store import conditional_book, limit_book, sniper_book
from shared.store.order_store import QueuedMessage, RestingPlace


@dataclass(frozen=True, slots=True)
class Placement:
    """The arguments `OrderStore.create` needs for one order."""

    first_event: OrderEvent
    message: QueuedMessage | None = None
    resting: tuple[OrderEvent, RestingPlace] | None = None


def placement(order: Order, first_extra: dict[str, Any] | None = None) -> Placement:
    """How to create `order`; `first_extra` adds fields to its `pending` event (e.g. a link to another order)."""
    first = OrderEvent(
        order.order_id,
        1,
        OrderStatus.PENDING,
        order.type.value,
        client_order_id=order.client_order_id,
        extra=first_extra,
    )
    if order.type is OrderType.MARKET:
        return Placement(first, message=execute_order_message(order.order_id))
    extra: dict[str, object]
    if order.type is OrderType.LIMIT:
        place, extra = limit_book.resting_place(order), {"limitPrice": str(order.limit_price)}
    elif order.type in CONDITIONAL_TYPES:
        place, extra = conditional_book.resting_place(order), order.conditions()
    else:
        place, extra = sniper_book.resting_place(order), {"trigger": order.trigger}
    waiting = OrderEvent(
        order.order_id, 2, OrderStatus.WAITING, order.type.value, client_order_id=order.client_order_id, extra=extra
    )
    return Placement(first, resting=(waiting, place))
