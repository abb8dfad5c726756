"""Conditional-order rules: when a stop, a trailing stop or an OCO fires. Pure, no Redis.

The rules are the contract's ("Conditional orders"), one order at a time; docs/conditional-orders.md designs
how the Redis book (shared/store/lua/take_conditional.lua) applies them to 100,000s of resting orders at
once, and tests/support/conditional_reference.py holds the two together on price paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from shared.domain.slippage import BPS

MAX_TRAIL_BPS = 5000


class Condition(StrEnum):
    """Which condition fired (the `trigger` field of a conditional order's `triggered` event)."""

    STOP = "stop"
    TAKE_PROFIT = "take_profit"
    TRAIL = "trail"


def trail_level(high_water_mark: Decimal, trail_bps: int) -> Decimal:
    """The price at or below which a trailing stop with this high-water mark fires."""
    return high_water_mark * (BPS - trail_bps) / BPS


def stop_fires(best: Decimal, stop_price: Decimal) -> bool:
    return best <= stop_price


def take_profit_fires(best: Decimal, take_profit_price: Decimal) -> bool:
    return best >= take_profit_price


def trail_fires(best: Decimal, high_water_mark: Decimal, trail_bps: int) -> bool:
    # Multiplied out rather than divided: exact in Decimal for every price the API accepts.
    return best * BPS <= high_water_mark * (BPS - trail_bps)


def activates(best: Decimal, activation_price: Decimal | None) -> bool:
    return activation_price is None or best >= activation_price


@dataclass(frozen=True, slots=True)
class Taken:
    """An order a tick fired, and why: what its hand-off member says (`<condition>|<price>|<high>|<rest member>`,
    as shared/store/lua/take_conditional.lua writes it; the rest member ends with the order id)."""

    member: str
    condition: Condition
    price: Decimal
    high_water_mark: Decimal | None = None

    @classmethod
    def from_member(cls, member: str) -> Taken:
        condition, price, high, _rest_member = member.split("|", 3)
        return cls(member, Condition(condition), Decimal(price), Decimal(high) if high else None)
