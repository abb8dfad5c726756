"""Whether the engine's Redis commands would run on a Redis Cluster, checked on a single Redis.

A cluster refuses a command that names keys of more than one hash slot (a script's declared keys included,
absent ones too). `audit_slots` wraps one asyncio client so that every such command it sends is recorded,
while the command itself still runs: a test drives a flow on the suite's Redis and then asserts that nothing
was recorded. It sees the commands the engine sends one by one, with their keys read as the cluster router reads them;
those queued by hand in an explicit pipeline or transaction are not seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import ClusterCrossSlotError

from shared.redis_cluster import command_keys, command_name, slot_of


def cross_slot(args: Sequence[Any]) -> str | None:
    """A description of the command if its keys span more than one slot, else None: the cluster router's own
    reading of a command's keys (shared/redis_cluster.py), which refuses such a command before sending it."""
    try:
        slot_of(args)
    except ClusterCrossSlotError:
        keys = [key.decode() if isinstance(key, bytes) else str(key) for key in command_keys(args)]
        return f"{command_name(args)} {keys}"
    return None


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
