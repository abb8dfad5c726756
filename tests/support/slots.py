"""Whether the engine's Redis commands would run on a Redis Cluster, checked on a single Redis.

A cluster refuses a command that names keys of more than one hash slot (a script's declared keys included,
absent ones too). `audit_slots` wraps one asyncio client so that every such command it sends is recorded,
while the command itself still runs: a test drives a flow on the suite's Redis and then asserts that nothing
was recorded. It sees the commands the engine sends one by one (scripts, and the multi-key commands below);
those queued by hand in an explicit pipeline or transaction are not seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.crc import key_slot

#: Commands whose every argument after the name is a key.
ALL_KEYS = frozenset({"DEL", "UNLINK", "EXISTS", "TOUCH", "MGET", "WATCH"})
SCRIPTS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def keys_of(args: Sequence[Any]) -> list[str]:
    """The keys a command names, for the commands this audit knows (none for the others)."""
    name = _text(args[0]).upper()
    if name in SCRIPTS:
        return [_text(key) for key in args[3 : 3 + int(args[2])]]
    if name in ALL_KEYS:
        return [_text(key) for key in args[1:]]
    if name in ("XREAD", "XREADGROUP"):
        after = [_text(arg).upper() for arg in args].index("STREAMS") + 1
        streams = args[after:]
        return [_text(key) for key in streams[: len(streams) // 2]]
    return []


def cross_slot(args: Sequence[Any]) -> str | None:
    """A description of the command if its keys span more than one slot, else None."""
    keys = keys_of(args)
    if len({key_slot(key.encode()) for key in keys}) <= 1:
        return None
    return f"{_text(args[0]).upper()} {keys}"


def audit_slots(client: Any) -> list[str]:
    """Record every command `client` sends that a cluster would refuse; returns the (live) list of them."""
    refused: list[str] = []
    send = client.execute_command

    async def execute_command(*args: Any, **options: Any) -> Any:
        if (why := cross_slot(args)) is not None:
            refused.append(why)
        return await send(*args, **options)

    client.execute_command = execute_command
    return refused
