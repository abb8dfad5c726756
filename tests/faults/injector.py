"""Faults done to a running engine, each one counted and logged with the moment it happened."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from deploy.local.embedded_postgres import EmbeddedPostgres
from deploy.local.embedded_redis import EmbeddedRedis
from tests.support.processes import Engine


@dataclass
class FaultInjector:
    engine: Engine
    redis: EmbeddedRedis
    postgres: EmbeddedPostgres
    counts: Counter = field(default_factory=Counter)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    #: Counts orders being executed right now (None while it cannot tell), to show faults hit work in flight.
    in_flight: Callable[[], int | None] = lambda: None
    in_flight_at_faults: list[int] = field(default_factory=list)

    def note(self, kind: str, what: str, busy: int | None = None) -> None:
        self.counts[kind] += 1
        moment = time.monotonic() - self.started
        self.timeline.append((round(moment, 1), what, busy))
        if busy is not None:
            self.in_flight_at_faults.append(busy)
        print(f"[faults +{moment:6.1f}s] {what} ({busy} orders executing)", flush=True)

    def kill_service(self, name: str, replicas: tuple[int, ...] = (0,), down_s: float = 1.0) -> None:
        """SIGKILL these replicas of a service together, leave them down `down_s`, start them again."""
        busy = self.in_flight()
        for index in replicas:
            self.engine.replica(name, index).kill()
        self.note(f"kill -9 {name}", f"kill -9 {name} replica(s) {list(replicas)}", busy)
        time.sleep(down_s)
        for index in replicas:
            self.engine.restart(name, index)

    def restart_redis(self, down_s: float = 1.0) -> None:
        """SIGKILL Redis and start it again on the same AOF (appendfsync everysec)."""
        busy = self.in_flight()
        self.redis.kill()
        self.note("redis kill -9 + restart", f"kill -9 redis; down {down_s} s", busy)
        time.sleep(down_s)
        self.redis.revive()

    def freeze_redis(self, frozen_s: float = 10.0) -> None:
        """SIGSTOP Redis: every client hangs (or times out) until SIGCONT."""
        busy = self.in_flight()
        self.redis.pause()
        self.note("redis SIGSTOP", f"SIGSTOP redis for {frozen_s} s", busy)
        time.sleep(frozen_s)
        self.redis.resume()

    def stop_postgres(self) -> None:
        busy = self.in_flight()
        self.postgres.kill()
        self.note("postgres down", "postgres immediate shutdown", busy)

    def start_postgres(self) -> None:
        self.postgres.revive()
        print(f"[faults +{time.monotonic() - self.started:6.1f}s] postgres back", flush=True)

    def dead_services(self) -> list[str]:
        """Replicas that exited on their own (not killed by us): a service that gave up is a bug."""
        return self.engine.dead_services()
