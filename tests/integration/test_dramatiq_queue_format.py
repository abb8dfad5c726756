"""dramatiq's Redis queue format, as the order store's Lua scripts and `hand_enqueue` write it by hand, still
round-trips through dramatiq itself (see shared/execution/dramatiq_internals.py)."""

from __future__ import annotations

import time
import uuid

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from shared import redis_keys
from shared.execution import dramatiq_internals as internals
from shared.execution.messages import EXECUTE_ORDER
from tests.support.internals import Problems


def test_hand_built_queue_writes_round_trip_through_dramatiq(redis_url):
    """What the Lua scripts and `hand_enqueue` write, dramatiq's consumer reads; what dramatiq writes (queue,
    messages hash, dead letters) is where `shared.redis_keys` says."""
    problems = Problems()
    queue = f"internals-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(url=redis_url, namespace=redis_keys.dramatiq_namespace(0))
    client = broker.client
    try:
        # Ours → dramatiq: hand-built bytes under hand-built keys, fetched and decoded by dramatiq's consumer.
        message = dramatiq.Message(queue_name=queue, actor_name=EXECUTE_ORDER, args=("o-1",), kwargs={}, options={})
        redis_id = str(uuid.uuid4())
        message = message.copy(options={internals.REDIS_MESSAGE_ID: redis_id})
        pipe = client.pipeline(transaction=True)
        internals.hand_enqueue(
            pipe,
            redis_keys.dramatiq_queue(0, queue),
            redis_keys.dramatiq_messages(0, queue),
            redis_id,
            message.encode(),
        )
        pipe.execute()
        consumer = broker.consume(queue, prefetch=1, timeout=200)
        fetched = None
        deadline = time.monotonic() + 5
        while fetched is None and time.monotonic() < deadline:
            fetched = next(consumer)
        problems.check(
            "hand-built enqueue (create_order.lua, transition.lua, hand_enqueue)",
            fetched is not None and fetched.message_id == message.message_id and list(fetched.args) == ["o-1"],
            f"dramatiq's consumer fetched {fetched!r}",
        )
        if fetched is not None:
            # A nack dead-letters it: where dead_letters.py reads dead letters.
            consumer.nack(fetched)
            problems.check(
                "dead-letter keys (.XQ, .XQ.msgs)",
                client.zscore(redis_keys.dramatiq_dead_letters(0, queue), redis_id) is not None
                and client.hget(redis_keys.dramatiq_dead_letter_messages(0, queue), redis_id) is not None,
                "a nacked message is not under redis_keys.dramatiq_dead_letters*",
            )
        consumer.close()

        # dramatiq → ours: its own enqueue lands under the keys the Lua scripts write.
        sent = broker.enqueue(dramatiq.Message(queue, EXECUTE_ORDER, ("o-2",), {}, {}))
        sent_id = sent.options[internals.REDIS_MESSAGE_ID]
        problems.check(
            "queue keys (<ns>:<queue>, <ns>:<queue>.msgs)",
            client.lrange(redis_keys.dramatiq_queue(0, queue), 0, -1) == [sent_id.encode()]
            and dramatiq.Message.decode(client.hget(redis_keys.dramatiq_messages(0, queue), sent_id)).args == ("o-2",),
            "RedisBroker.enqueue did not write where redis_keys.dramatiq_queue/messages say",
        )
    finally:
        broker.flush(queue)
        client.delete(redis_keys.dramatiq_dead_letters(0, queue), redis_keys.dramatiq_dead_letter_messages(0, queue))
        broker.close()
    problems.raise_if_any()
