"""Every blocking read of the engine asks Redis for less time than its client waits for a reply: otherwise
the client gives up first and an idle loop reports Redis lost (it did, with 5 s reads on 5 s sockets)."""

import pytest

from services.limit_worker.__main__ import TICKS_BLOCK_MS
from services.sniper_worker.__main__ import EVENTS_BLOCK_MS
from shared.event_feed import READ_BLOCK_MS
from shared.execution.broker import IDLE_WAIT_S
from shared.redis_client import MAX_BLOCK_S, SOCKET_TIMEOUT_S, redis_client
from shared.store.doorbell import MAX_WAIT_S


@pytest.mark.parametrize(
    ("read", "seconds"),
    [
        ("limit worker's ticks", TICKS_BLOCK_MS / 1000),
        ("sniper worker's venue events", EVENTS_BLOCK_MS / 1000),
        ("API's event reader", READ_BLOCK_MS / 1000),
        ("housekeeping's doorbell", MAX_WAIT_S),
        ("idle dramatiq consumer", IDLE_WAIT_S),
    ],
)
def test_a_blocking_read_ends_well_before_its_socket_times_out(read, seconds):
    assert seconds <= MAX_BLOCK_S <= SOCKET_TIMEOUT_S / 2, read


def test_the_engine_clients_socket_timeout_is_the_named_one():
    client = redis_client("redis://127.0.0.1:6379/0")
    assert client.connection_pool.connection_kwargs["socket_timeout"] == SOCKET_TIMEOUT_S
