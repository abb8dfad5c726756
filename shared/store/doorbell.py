"""Waking a resting book's housekeeping when there is something to do, instead of on a poll.

Housekeeping (expiring resting orders, recovering hand-offs a dead worker left behind, firing sniper
orders whose condition already held when they were placed) is due either at a moment known in advance
(the earliest `expiresAt`, the oldest hand-off plus its grace, the launch schedule's next step) or when an
order is placed. Polling for both woke every worker several times a second with nothing to do. Instead the
loop sleeps until its earliest known moment, blocked in `BLPOP` on a doorbell: a list of at most one element
that `create_order.lua` pushes to when a placement brings that moment forward (`ring` in
`shared/store/scripts.py`). Time is the trigger only where time is what the work waits for.

Several replicas may wait on one doorbell: `BLPOP` wakes one of them, and one is enough, since every
expiry, recovery and firing is a claim any replica can make.
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from shared.redis_client import MAX_BLOCK_S
from shared.service import Stopped, unless_stopped

#: A wait never lasts longer than this: the loop's heartbeat beats once per wake-up, a push lost with a
#: failed master (or made by a client older than the doorbell) delays a chore by this much at most, and
#: the BLPOP stays inside the client's socket timeout.
MAX_WAIT_S = MAX_BLOCK_S
#: Deadlines closer than this are not worth a blocking round trip: the loop goes round at once.
MIN_WAIT_S = 0.005


def wait_s(due_ms: int | None, now_ms: int, max_wait_s: float = MAX_WAIT_S) -> float:
    """How long to sleep for a chore due at `due_ms` (None: nothing due), capped at `max_wait_s`."""
    if due_ms is None:
        return max_wait_s
    return min(max(due_ms - now_ms, 0) / 1000, max_wait_s)


def earliest(*due_ms: int | None) -> int | None:
    known = [due for due in due_ms if due is not None]
    return min(known) if known else None


class Doorbell:
    def __init__(self, redis: Redis, key: str, *, max_wait_s: float = MAX_WAIT_S) -> None:
        self.redis = redis
        self.key = key
        self.max_wait_s = max_wait_s

    async def wait(self, due_ms: int | None, stop: asyncio.Event | None = None) -> bool:
        """Sleep until `due_ms` (epoch ms), a ring, or `stop`, whichever comes first; True when rung."""
        seconds = wait_s(due_ms, int(time.time() * 1000), self.max_wait_s)
        if seconds < MIN_WAIT_S:
            return False
        try:
            return await unless_stopped(self.redis.blpop([self.key], timeout=seconds), stop) is not None
        except Stopped:
            return False
