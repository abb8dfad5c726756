"""The execution message the engine writes by hand is the one dramatiq would write (shared/execution/messages.py)."""

import json
import uuid

import dramatiq

from shared.execution.dramatiq_internals import REDIS_MESSAGE_ID
from shared.execution.messages import EXECUTE_ORDER, execute_order_bytes, execute_order_message
from shared.redis_keys import EXECUTION_QUEUE


def test_the_hand_written_bytes_are_dramatiqs_own_encoding():
    order_id, message_id, redis_id = uuid.uuid4(), str(uuid.uuid4()), str(uuid.uuid4())
    theirs = dramatiq.Message(
        queue_name=EXECUTION_QUEUE,
        actor_name=EXECUTE_ORDER,
        args=(str(order_id),),
        kwargs={},
        options={REDIS_MESSAGE_ID: redis_id},
        message_id=message_id,
        message_timestamp=1_700_000_000_123,
    ).encode()
    ours = execute_order_bytes(order_id, message_id, redis_id, 1_700_000_000_123)
    assert ours == theirs
    assert json.loads(ours) == json.loads(theirs)


def test_a_built_message_decodes_as_dramatiqs_for_its_order():
    order_id = uuid.uuid4()
    queued = execute_order_message(order_id)
    message = dramatiq.Message.decode(queued.data)
    assert (message.queue_name, message.actor_name, list(message.args)) == (
        EXECUTION_QUEUE,
        EXECUTE_ORDER,
        [str(order_id)],
    )
    assert message.options == {REDIS_MESSAGE_ID: queued.redis_message_id}
    assert message.message_id != queued.redis_message_id


def test_message_ids_are_distinct_version_4_uuids_in_canonical_text():
    ids = []
    for _ in range(2000):
        message = execute_order_message(uuid.uuid4())
        decoded = dramatiq.Message.decode(message.data)
        ids += [message.redis_message_id, decoded.message_id]
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    assert len(set(ids)) == len(ids)
