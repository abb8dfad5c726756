"""The contract's order types, alone in a module without pydantic, so that what only needs the names (the
operator CLI's options, its progress display) imports them without the request model; shared.domain.orders
re-exports `OrderType`, the one definition."""

from __future__ import annotations

from enum import StrEnum


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    SNIPER = "sniper"
