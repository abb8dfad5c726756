"""The contract's conditional-order rules applied one order at a time, the obvious way: the oracle the Redis
book (docs/conditional-orders.md) must agree with, tick for tick, on any price path."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from shared.domain.conditional import Condition, activates, stop_fires, take_profit_fires, trail_fires


@dataclass(frozen=True, slots=True)
class ConditionalTerms:
    """What a conditional order waits for: the fields of its type (others None)."""

    order_id: UUID
    stop_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    trail_bps: int | None = None
    activation_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Fired:
    order_id: UUID
    condition: Condition
    price: Decimal
    high_water_mark: Decimal | None = None


@dataclass(slots=True)
class _Resting:
    terms: ConditionalTerms
    high: Decimal | None = None  # a trailing stop's high-water mark once armed


class ReferenceBook:
    """The contract's rules applied to each order on each tick: slow, obviously right, for tests."""

    def __init__(self) -> None:
        self._resting: dict[UUID, _Resting] = {}

    def place(self, terms: ConditionalTerms) -> None:
        self._resting[terms.order_id] = _Resting(terms)

    def cancel(self, order_id: UUID) -> None:
        self._resting.pop(order_id, None)

    def tick(self, best: Decimal) -> list[Fired]:
        fired: list[Fired] = []
        for order_id, resting in list(self._resting.items()):
            if (shot := self._check(resting, best)) is not None:
                fired.append(shot)
                del self._resting[order_id]
        return fired

    @staticmethod
    def _check(resting: _Resting, best: Decimal) -> Fired | None:
        terms = resting.terms
        if terms.trail_bps is not None:
            if resting.high is None:
                if activates(best, terms.activation_price):
                    resting.high = best  # armed on this tick, at its price: cannot fire on it
                return None
            resting.high = max(resting.high, best)
            if trail_fires(best, resting.high, terms.trail_bps):
                return Fired(terms.order_id, Condition.TRAIL, best, resting.high)
            return None
        if terms.stop_price is not None and stop_fires(best, terms.stop_price):
            return Fired(terms.order_id, Condition.STOP, best)
        if terms.take_profit_price is not None and take_profit_fires(best, terms.take_profit_price):
            return Fired(terms.order_id, Condition.TAKE_PROFIT, best)
        return None
