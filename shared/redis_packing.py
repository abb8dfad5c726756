"""Connections that pack commands with hiredis: redis-py's asyncio connection packs every command in pure
Python, byte string by byte string, even when hiredis is installed (the sync client uses
`hiredis.pack_command`; redis-py issue #4176, PR #4191). A profile of the worker shows packing in C pays.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError


class HiredisPacking:
    """`pack_command` by hiredis, as redis-py's sync connection does when hiredis is installed."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):  # "SCRIPT LOAD" and friends: the server wants the words apart
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # hiredis takes str, bytes, int and float only: views become bytes, as redis-py does
            args = tuple(bytes(arg) if isinstance(arg, memoryview | bytearray) else arg for arg in args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:  # the same error the pure-Python encoder gives for, say, a None
            raise DataError(str(exc)) from None


class HiredisTcpConnection(HiredisPacking, Connection):
    pass


class HiredisUnixConnection(HiredisPacking, UnixDomainSocketConnection):
    pass


class HiredisSslConnection(HiredisPacking, SSLConnection):
    pass


HIREDIS_VARIANT = {
    Connection: HiredisTcpConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
    SSLConnection: HiredisSslConnection,
}
