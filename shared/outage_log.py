"""One log line when a loop loses a backing store, a reminder while the outage lasts, one when it is back.

The services' loops retry every 0.2-0.5 s; each logging every failed attempt, a Redis that was down for the
runner's longest restart back-off (30 s) wrote ~20 lines a second to `make run`'s terminal (400 in 20 s,
most of them the same two sentences), burying the one line that says what happened. A loop now says it
once, then every `REMIND_EVERY_S` how long it has been failing and how many attempts, then that it is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from loguru import logger

#: How often a loop that keeps failing says so again (with the latest error).
REMIND_EVERY_S = 30.0


class OutageLog:
    """The log of one loop's outages: `failed` on every failed attempt, `ok` on every good one."""

    __slots__ = ("_what", "_every_s", "_clock", "_since", "_said_at", "_attempts")

    def __init__(self, what: str, *, every_s: float = REMIND_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self._what = what  # e.g. "tick loop lost Redis"
        self._every_s = every_s
        self._clock = clock
        self._since: float | None = None  # when the outage began; None: no outage
        self._said_at = 0.0
        self._attempts = 0

    def failed(self, exc: BaseException | str) -> None:
        now = self._clock()
        self._attempts += 1
        if self._since is None:
            self._since = self._said_at = now
            logger.warning("{} ({}); retrying", self._what, exc)
        elif now - self._said_at >= self._every_s:
            self._said_at = now
            logger.warning(
                "{} for {:.0f} s, {} attempts so far ({}); retrying", self._what, now - self._since, self._attempts, exc
            )

    def ok(self) -> None:
        if self._since is None:
            return
        logger.info(
            "{}: back after {:.1f} s, {} failed attempts", self._what, self._clock() - self._since, self._attempts
        )
        self._since, self._attempts = None, 0
