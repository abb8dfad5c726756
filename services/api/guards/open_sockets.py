"""How many WebSockets each client holds open in this API process, capped at `WS_MAX_PER_CLIENT`.

Per process, not per deployment: a socket lives and dies with its process, so a count kept here is
always right (a shared count in Redis would leak whenever a replica dies with sockets open). With N
replicas behind a balancer a client may hold up to N × the cap.
"""

from __future__ import annotations

from collections import Counter


class OpenSockets:
    def __init__(self, max_per_client: int) -> None:
        self.max_per_client = max_per_client  # 0 = no cap
        self._open: Counter[str] = Counter()

    def admit(self, client: str) -> bool:
        """Whether `client` may open one more socket; if so it is counted until `release`."""
        if self.max_per_client and self._open[client] >= self.max_per_client:
            return False
        self._open[client] += 1
        return True

    def release(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]

    def __len__(self) -> int:
        """Clients holding at least one socket."""
        return len(self._open)
