"""The execution queue's one message: "drive this order", and how to build it without a worker.

The API enqueues it inside its order-creating Lua script (so acceptance and enqueueing are atomic),
which is why it builds dramatiq's message bytes itself instead of calling `actor.send()`.
"""

from __future__ import annotations

from uuid import UUID, uuid4

import dramatiq

from shared.execution.dramatiq_internals import REDIS_MESSAGE_ID
from shared.redis_keys import EXECUTION_QUEUE
from shared.store.order_store import QueuedMessage

EXECUTE_ORDER = "execute_order"


def execute_order_message(order_id: UUID) -> QueuedMessage:
    redis_message_id = str(uuid4())
    message: dramatiq.Message[None] = dramatiq.Message(  # the actor's coroutine returns nothing
        queue_name=EXECUTION_QUEUE,
        actor_name=EXECUTE_ORDER,
        args=(str(order_id),),
        kwargs={},
        options={REDIS_MESSAGE_ID: redis_message_id},
    )
    return QueuedMessage(redis_message_id=redis_message_id, data=message.encode())
