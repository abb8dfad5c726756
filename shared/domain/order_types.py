"""The contract's order types, alone in a module without pydantic, so that what only needs the names (the
operator CLI's options, its progress display) imports them without the request model; shared.domain.orders
re-exports `OrderType`, the one definition."""

from __future__ import annotations

from enum import StrEnum


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    SNIPER = "sniper"
    STOP = "stop"
    TRAILING_STOP = "trailing_stop"
    OCO = "oco"


#: Orders that rest on the pair's BEST price until a condition holds (docs/conditional-orders.md).
CONDITIONAL_TYPES = frozenset({OrderType.STOP, OrderType.TRAILING_STOP, OrderType.OCO})
#: Orders that wait for a BEST price tick, and so need a streamed pair.
PRICE_TRIGGERED_TYPES = CONDITIONAL_TYPES | {OrderType.LIMIT}
