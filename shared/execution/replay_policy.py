"""What a dead letter is, and what replaying it means for its order: pure decisions, no Redis.

`shared/execution/dead_letters.py` reads the dead letters and the order, asks `decide` what to do, and
applies the answer atomically. The rules (see that module's docstring for the whole story):

- order not terminal  → REQUEUE: its original execution message goes back on the queue; the executor
  resumes the order from its last persisted stage (the lease and the ledger's nonce keep it at-most-once).
- order `failed`      → RECREATE: a new order with the same request, linked by `replayOf` and created
  under the Idempotency-Key `replay:<orderId>`; refused while a transaction of the original may still
  execute (sent, never settled) or once a resting order's `expiresAt` has passed.
- order confirmed, cancelled or expired → DISCARD: the order already has its one terminal state; the dead
  letter is only removed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import dramatiq
import orjson

from shared.domain import idempotency
from shared.domain.events import iso_utc
from shared.domain.lifecycle import OrderStatus
from shared.domain.orders import Order
from shared.domain.partitions import new_order_id, partition_of
from shared.store.order_store import OrderState, QueuedMessage
from shared.venues.base import TxStatus
from shared.venues.ledger import TxRecord

#: The Idempotency-Key a replayed order is created under is this prefix + the original orderId: a key no
#: client may send, remembered in the engine's own namespace (shared/domain/idempotency.py).
REPLAY_KEY_PREFIX = idempotency.RESERVED_PREFIX
#: Stands in for the request-body hash the API stores with an Idempotency-Key: every replay of one order
#: carries the same "body", so a second replay is answered with the first one's order.
REPLAY_BODY_HASH = "dead-letter-replay"
#: Message options that describe the delivery that died, not the message: a requeued message starts afresh
#: (the executor still caps attempts per order, from the order's own events).
DELIVERY_OPTIONS = ("retries", "traceback", "eta")


class ReplayAction(StrEnum):
    REQUEUE = "requeued"
    RECREATE = "recreated"
    DISCARD = "discarded"


class NotReplayable(Exception):
    """Replaying this dead letter would break a promise (or cannot be done); `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered execution message."""

    message_id: str
    order_id: str | None
    dead_lettered_at: datetime | None
    attempts: int
    message: dict[str, Any]
    data: bytes

    @classmethod
    def parse(cls, message_id: str, data: bytes, score_ms: float | None) -> DeadLetter:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            message = {}
        args = message.get("args") or [None]
        options = message.get("options") or {}
        return cls(
            message_id=message_id,
            order_id=str(args[0]) if args[0] is not None else None,
            dead_lettered_at=None if score_ms is None else datetime.fromtimestamp(score_ms / 1000, UTC),
            attempts=int(options.get("retries", 0)) + 1,
            message=message,
            data=data,
        )

    @property
    def last_traceback_line(self) -> str | None:
        """The exception of the last delivery dramatiq recorded a traceback for (it keeps the one before last)."""
        traceback = (self.message.get("options") or {}).get("traceback") or ""
        lines = [line for line in str(traceback).splitlines() if line.strip()]
        return lines[-1].strip() if lines else None

    def to_view(self, *, with_message: bool = False) -> dict[str, Any]:
        view: dict[str, Any] = {
            "messageId": self.message_id,
            "orderId": self.order_id,
            "deadLetteredAt": iso_utc(self.dead_lettered_at) if self.dead_lettered_at else None,
            "attempts": self.attempts,
        }
        if with_message:
            view["message"] = self.message
        return view


def last_error(letter: DeadLetter, state: OrderState | None) -> str | None:
    """The order's persisted failure reason if it has one, else the last traceback line of the message."""
    if state is not None and state.fields.get("error"):
        message = state.fields.get("errorMessage")
        return f"{state.fields['error']}: {message}" if message else state.fields["error"]
    return letter.last_traceback_line


def summary(letter: DeadLetter, state: OrderState | None) -> dict[str, Any]:
    """One row of the dead-letter list: the message and what its order looks like now."""
    return {
        **letter.to_view(),
        "status": state.status.value if state else None,
        "type": state.order.type.value if state else None,
        "pair": state.order.pair if state else None,
        "lastError": last_error(letter, state),
    }


def decide(state: OrderState | None, transactions: list[TxRecord], now: datetime) -> ReplayAction:
    """What replaying the dead letter of this order does; NotReplayable when it must not be replayed."""
    if state is None:
        raise NotReplayable(
            "order_not_in_redis",
            "the order is no longer in Redis (terminal orders stay ORDER_RETENTION_S); its history is in "
            "PostgreSQL. Nothing to replay: purge the dead letter.",
        )
    if not state.terminal:
        return ReplayAction.REQUEUE
    if state.status is not OrderStatus.FAILED:
        return ReplayAction.DISCARD
    for tx in transactions:
        if tx.outcome is None or tx.outcome.status is TxStatus.CONFIRMED:
            fate = "never settled" if tx.outcome is None else "executed"
            raise NotReplayable(
                "may_have_executed",
                f"transaction {tx.tx_hash} of this order was sent and {fate}: a new order could swap twice",
            )
    expires_at = state.order.expires_at
    if expires_at is not None and expires_at <= now:
        raise NotReplayable("expired", f"the order's expiresAt ({iso_utc(expires_at)}) has passed")
    return ReplayAction.RECREATE


def replay_key(order_id: UUID | str) -> str:
    return f"{REPLAY_KEY_PREFIX}{order_id}"


def replay_scope(original_id: UUID | str) -> str:
    """The replay's Idempotency-Key as the store remembers it: the engine's namespace, whoever owns the order
    (what `Order.idempotency_scope` of the replayed order gives)."""
    return idempotency.scope(None, replay_key(original_id))


def replay_order(original: Order, now: datetime) -> Order:
    """The same request as a new order: new id and time, the replay's Idempotency-Key, all else as accepted
    (owner, clientOrderId, limit price, trigger, expiry)."""
    return dataclasses.replace(
        original,
        order_id=new_order_id(partition_of(original.order_id)),  # beside the original, its dead letter and key
        created_at=now,
        idempotency_key=replay_key(original.order_id),
    )


def replay_link(original_id: UUID | str) -> dict[str, str]:
    """Extra fields of a replayed order's `pending` event that point back to the order it replays."""
    return {"replayOf": str(original_id)}


def requeue_message(letter: DeadLetter) -> QueuedMessage:
    """The dead letter's own message (same ids), minus what described its dead deliveries."""
    message = dramatiq.Message.decode(letter.data)
    options = {k: v for k, v in message.options.items() if k not in DELIVERY_OPTIONS}
    return QueuedMessage(letter.message_id, dataclasses.replace(message, options=options).encode())


@dataclass(frozen=True, slots=True)
class ReplayResult:
    order_id: str
    action: ReplayAction
    replayed_at: str
    new_order_id: str | None = None
    dead_letters_removed: int = 0
    #: True when this answer is the record of an earlier replay (a second replay changes nothing).
    already_replayed: bool = False

    def to_view(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "action": self.action.value,
            "newOrderId": self.new_order_id,
            "replayedAt": self.replayed_at,
            "deadLettersRemoved": self.dead_letters_removed,
            "alreadyReplayed": self.already_replayed,
        }

    def to_record(self) -> bytes:
        return orjson.dumps({k: v for k, v in self.to_view().items() if k != "alreadyReplayed"})

    @classmethod
    def from_record(cls, raw: bytes | str) -> ReplayResult:
        record = orjson.loads(raw)
        return cls(
            order_id=record["orderId"],
            action=ReplayAction(record["action"]),
            replayed_at=record["replayedAt"],
            new_order_id=record.get("newOrderId"),
            dead_letters_removed=int(record.get("deadLettersRemoved", 0)),
            already_replayed=True,
        )
