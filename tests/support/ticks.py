"""Stream ids for ticks a test writes itself: increasing, and in real time, as `stream:ticks` gives them (the
conditional book applies a tick only to orders placed before it, by the id's milliseconds)."""

from __future__ import annotations

import time


class TickIds:
    def __init__(self) -> None:
        self.last_ms, self.n = 0, -1

    def next(self) -> str:
        now_ms = int(time.time() * 1000)
        if now_ms > self.last_ms:
            self.last_ms, self.n = now_ms, 0
        else:
            self.n += 1
        return f"{self.last_ms}-{self.n}"

    def earlier(self, ms_ago: int) -> str:
        """An id from `ms_ago` before the last one given: a tick already in the stream when a worker restarts."""
        return f"{self.last_ms - ms_ago}-0"
