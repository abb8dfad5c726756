"""The execution queue's one message: "drive this order", and how to build it without a worker.

The API enqueues it inside its order-creating Lua script (so acceptance and enqueueing are atomic),
which is why it builds dramatiq's message bytes itself instead of calling `actor.send()`.
"""

from __future__ import annotations

import random
from uuid import UUID

import orjson
from dramatiq.common import current_millis

from shared.execution.dramatiq_internals import REDIS_MESSAGE_ID
from shared.redis_keys import EXECUTION_QUEUE
from shared.store.order_store import QueuedMessage

EXECUTE_ORDER = "execute_order"


def execute_order_message(order_id: UUID) -> QueuedMessage:
    redis_message_id = _message_uuid()
    data = execute_order_bytes(order_id, _message_uuid(), redis_message_id, current_millis())
    return QueuedMessage(redis_message_id=redis_message_id, data=data)


#: A version-4 UUID's fixed bits: the version nibble (4) and the RFC 4122 variant (0b10).
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def _message_uuid() -> str:
    """A random (version 4) UUID as text, for a message id: from `random` rather than `uuid4`'s os.urandom,
    since it need only be unique, not unguessable, and formatted directly (a system call and a UUID object
    per id were a tenth of a large hand-over's CPU). `random` is seeded from os.urandom and reseeded in a
    forked child, so processes do not repeat each other."""
    digits = f"{random.getrandbits(128) & _V4_CLEAR | _V4_SET:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def execute_order_bytes(order_id: UUID, message_id: str, redis_message_id: str, timestamp_ms: int) -> bytes:
    """The bytes `dramatiq.Message(...).encode()` gives for this message (its fields in its field order, as
    its JSON encoder writes them), written by orjson: a hand-over of thousands of triggered orders built a
    dramatiq Message and ran the standard library's encoder for each, a fifth of its CPU.
    tests/unit/test_execution_messages.py holds the two equal."""
    return orjson.dumps(
        {
            "queue_name": EXECUTION_QUEUE,
            "actor_name": EXECUTE_ORDER,
            "args": [str(order_id)],
            "kwargs": {},
            "options": {REDIS_MESSAGE_ID: redis_message_id},
            "message_id": message_id,
            "message_timestamp": timestamp_ms,
        }
    )
