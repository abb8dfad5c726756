"""The order state machine, as data.

`TRANSITIONS` is the whole truth about which status may follow which; every event appended to an
order is checked against it, and one parametrised test walks every legal and illegal pair.
"""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING = "pending"
    WAITING = "waiting"
    TRIGGERED = "triggered"
    ROUTING = "routing"
    BUILDING = "building"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


S = OrderStatus

TERMINAL: frozenset[OrderStatus] = frozenset({S.CONFIRMED, S.FAILED, S.CANCELLED, S.EXPIRED})

#: A retry repeats routing with a higher attempt from wherever the failed attempt stopped (quotes
#: fetched, or transaction built but not accepted): hence the edges back to ROUTING. Once submitted, the
#: order's fate is its transaction's, until that transaction certainly cannot land (its blockhash expired
#: unlanded): only then does SUBMITTED lead back to ROUTING, for a new transaction on a fresh blockhash.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING: frozenset({S.ROUTING, S.WAITING, S.FAILED}),
    S.WAITING: frozenset({S.TRIGGERED, S.CANCELLED, S.EXPIRED, S.FAILED}),
    S.TRIGGERED: frozenset({S.ROUTING, S.FAILED}),
    S.ROUTING: frozenset({S.BUILDING, S.ROUTING, S.FAILED}),
    S.BUILDING: frozenset({S.SUBMITTED, S.ROUTING, S.FAILED}),
    S.SUBMITTED: frozenset({S.CONFIRMED, S.FAILED, S.ROUTING}),
    S.CONFIRMED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}


class IllegalTransition(ValueError):
    def __init__(self, current: OrderStatus | None, new: OrderStatus) -> None:
        super().__init__(f"illegal transition {current} -> {new}")
        self.current = current
        self.new = new


def is_terminal(status: OrderStatus | str) -> bool:
    return OrderStatus(status) in TERMINAL


def can_transition(current: OrderStatus | None, new: OrderStatus) -> bool:
    """`current` is None for an order that does not exist yet: it may only begin as pending."""
    if current is None:
        return new is S.PENDING
    return new in TRANSITIONS[current]


def check_transition(current: OrderStatus | None, new: OrderStatus) -> None:
    if not can_transition(current, new):
        raise IllegalTransition(current, new)
