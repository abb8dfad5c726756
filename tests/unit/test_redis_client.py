"""hiredis command packing gives the bytes redis-py's own packer gives, and refuses what it refuses."""

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from shared.redis_client import HiredisTcpConnection, HiredisUnixConnection, redis_client

COMMANDS = [
    ("SET", "key", "value"),
    ("EVALSHA", "a" * 40, 2, "order:1", b"order:1:events", 0, 15_000, "", b"\x00\xff raw bytes"),
    ("HSET", "h", "price", "123.456000000001", "name", "ünïcødé €"),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", b"x"),
    ("SET", "big", "x" * 100_000),
    ("LPUSH", "l", memoryview(b"view"), bytearray(b"array")),
    ("INCRBYFLOAT", "n", 1.5),
    ("ZADD", "z", -3, "m"),
]


def _packed(connection, command) -> bytes:
    return b"".join(bytes(chunk) for chunk in connection.pack_command(*command))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_hiredis_packing_matches_the_python_packer(command):
    assert _packed(HiredisTcpConnection(), command) == _packed(Connection(), command)


def test_values_redis_cannot_store_are_refused_as_before():
    for connection in (HiredisTcpConnection(), Connection()):
        with pytest.raises(DataError):
            connection.pack_command("SET", "key", None)


def test_every_url_scheme_gets_a_hiredis_connection():
    assert redis_client("redis://127.0.0.1:1/0").connection_pool.connection_class is HiredisTcpConnection
    assert redis_client("unix:///tmp/redis.sock").connection_pool.connection_class is HiredisUnixConnection
