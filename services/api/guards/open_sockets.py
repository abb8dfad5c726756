"""How many WebSockets each client holds open in this API process, capped at `WS_MAX_PER_CLIENT`.

Per process, not per deployment: a socket lives and dies with its process, so a count kept here is
always right (a shared count in Redis would leak whenever a replica dies with sockets open). With N
replicas behind a balancer a client may hold up to N × the cap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class OpenSockets:
    def __init__(self, max_per_client: int) -> None:
        self.max_per_client = max_per_client  # 0 = no cap
        self._open: Counter[str] = Counter()

    @contextmanager
    def hold(self, client: str) -> Iterator[bool]:
        """Yields whether `client` may open one more socket; if so, counts it until the block ends."""
        if self.max_per_client and self._open[client] >= self.max_per_client:
            yield False
            return
        self._open[client] += 1
        try:
            yield True
        finally:
            self._open[client] -= 1
            if not self._open[client]:
                del self._open[client]
