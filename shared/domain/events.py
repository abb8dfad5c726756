"""One lifecycle event = one WebSocket message = one row of `order_events`.

The shape is the public contract's; `OrderEvent.to_json()` is the only place that spells it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

from shared.domain.lifecycle import OrderStatus


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """RFC 3339 with milliseconds and a Z, as the contract's example."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" → "Z"; isoformat is C, strftime slow


@dataclass(frozen=True, slots=True)
class OrderEvent:
    order_id: UUID
    seq: int
    status: OrderStatus
    order_type: str
    timestamp: datetime = field(default_factory=utc_now)
    attempt: int | None = None
    dex: str | None = None
    quotes: dict[str, Any] | None = None
    tx_hash: str | None = None
    executed_price: Decimal | None = None
    amount_out: Decimal | None = None
    error: str | None = None
    error_message: str | None = None
    client_order_id: str | None = None
    #: Stage details that are ours, not the contract's: the built transaction, simulated venue time, ...
    extra: dict[str, Any] | None = None

    def to_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "status",
            "orderId": str(self.order_id),
            "seq": self.seq,
            "status": self.status.value,
            "timestamp": iso_utc(self.timestamp),
            "orderType": self.order_type,
            "attempt": self.attempt,
            "dex": self.dex,
            "quotes": self.quotes,
            "txHash": self.tx_hash,
            "executedPrice": None if self.executed_price is None else str(self.executed_price),
            "amountOut": None if self.amount_out is None else str(self.amount_out),
            "error": self.error,
            "errorMessage": self.error_message,
            "clientOrderId": self.client_order_id,
        }
        if self.extra:
            message.update(self.extra)
        return message

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_message())


def parse_message(raw: bytes | str) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(raw)  # every event is stored as `to_json()` wrote it: an object
    return message
