"""Start the engine's services as real processes, the way `make run` does, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deploy.local import SERVICES

ROOT = Path(__file__).resolve().parents[2]
MODULES = SERVICES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn(name: str, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("ab") as log:  # a restarted replica keeps writing to its slot's log
        return subprocess.Popen(
            [sys.executable, "-m", MODULES[name]], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


@dataclass
class ServiceProcess:
    """One replica slot of a service: its current process, which `kill` and `respawn` replace."""

    name: str
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict, repr=False)
    restarts: int = 0

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def probes_url(self) -> str:
        """Where its /metrics and /health are (the API: its own port; the others: their METRICS_PORT)."""
        port = self.env["API_PORT"] if self.name == "api" else self.env["METRICS_PORT"]
        return f"http://127.0.0.1:{port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def respawn(self) -> None:
        """Start the slot's service again (after `kill` or `stop`), with the same environment and log."""
        if self.alive:
            raise RuntimeError(f"{self.name} (pid {self.process.pid}) is still running")
        self.restarts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n----- restart {self.restarts} -----\n".encode())
        self.process = _spawn(self.name, self.env, self.log_path)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


@dataclass
class Engine:
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, list[ServiceProcess]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['API_PORT']}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.env['API_PORT']}"

    def start(self, name: str, **extra_env: str) -> ServiceProcess:
        """Start one more replica of `name` (its own slot, log `<name>-<slot>.log`)."""
        index = len(self.processes.get(name, []))
        log_path = self.log_dir / f"{name}-{index}.log"
        log_path.unlink(missing_ok=True)
        # Every replica its own probe port, so engines, replicas and `make run` never contend for one.
        # A dropped transaction is known dead only after its blockhash's minute: a test engine drops none unless
        # the test asks (SIM_DROP_RATE), so no test waits a minute by chance.
        env = {**os.environ, "SIM_DROP_RATE": "0", **self.env, "METRICS_PORT": str(free_port()), **extra_env}
        service = ServiceProcess(name, _spawn(name, env, log_path), log_path, env)
        self.processes.setdefault(name, []).append(service)
        if name == "api":
            self.wait_for_api(service)
        return service

    def replica(self, name: str, index: int = 0) -> ServiceProcess:
        return self.processes[name][index]

    def restart(self, name: str, index: int = 0) -> ServiceProcess:
        """Start a killed (or stopped) replica again; for the API, wait until it answers."""
        service = self.replica(name, index)
        service.respawn()
        if name == "api":
            self.wait_for_api(service)
        return service

    def wait_for_api(self, service: ServiceProcess, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(f"api exited early:\n{service.log()}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"api did not come up:\n{service.log()}")

    def dead_services(self, excluding: Collection[tuple[str, int]] = ()) -> list[str]:
        """Every service process that exited on its own (`name[index] rc=…`), but those in `excluding`."""
        return [
            f"{name}[{index}] rc={slot.process.returncode}"
            for name, slots in self.processes.items()
            for index, slot in enumerate(slots)
            if not slot.alive and (name, index) not in excluding
        ]

    def stop_all(self) -> None:
        for services in self.processes.values():
            for service in services:
                service.stop()

    def logs(self) -> str:
        return "\n".join(
            f"----- {s.log_path.name}\n{s.log()[-4000:]}" for group in self.processes.values() for s in group
        )


ALL_SERVICES = ("execution-worker", "quote-stream", "db-sync", "limit-worker", "sniper-worker", "api")


def start_engine(
    redis_url: str,
    database_url: str,
    log_dir: Path,
    epoch_in_s: float = 0,
    replicas: Mapping[str, int] | None = None,
    **env: str,
) -> Engine:
    """Every service as a real process on an emptied Redis, with simulated latencies halved by default.

    `epoch_in_s` places the simulation's epoch (its launch schedule's origin) that far in the future, so
    scheduled events happen after the services are up, however long they take to start. `replicas` runs
    that many processes of a service (default one each).
    """
    from shared.redis_client import sync_redis_client
    from shared.settings import Settings

    # On a cluster (REDIS_CLUSTER in `env`), redis-py's cluster client: FLUSHDB on every primary.
    client = sync_redis_client(Settings(redis_url=redis_url, redis_cluster=env.get("REDIS_CLUSTER") == "true"))
    client.flushdb()
    if epoch_in_s:
        from shared.redis_keys import SIM_EPOCH

        client.set(SIM_EPOCH, repr(time.time() + epoch_in_s))
    client.close()
    engine = Engine(
        env={
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "API_PORT": str(free_port()),
            "SIM_SEED": "e2e",
            "SIM_LATENCY_SCALE": "0.5",
            "SIM_FAILURE_RATE": "0",
            "QUOTE_INTERVAL_MS": "200",
            **env,
        },
        log_dir=log_dir,
    )
    try:
        for name in ALL_SERVICES:
            for _ in range((replicas or {}).get(name, 1)):
                engine.start(name)
    except BaseException:
        engine.stop_all()
        raise
    return engine


@contextmanager
def running_engine(redis_url: str, database_url: str, log_dir: Path, **options) -> Iterator[Engine]:
    """`start_engine` for a with-block; stops every service after and prints the tail of their logs."""
    engine = start_engine(redis_url, database_url, log_dir, **options)
    try:
        yield engine
    finally:
        engine.stop_all()
        print(engine.logs()[-6000:])


def fast_engine(redis_url: str, database_url: str, log_dir: Path, seed: str, **env: str) -> Engine:
    """An engine (no process started yet) with no simulated latency or failures and quick retries."""
    return Engine(
        env={
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "API_PORT": str(free_port()),
            "SIM_SEED": seed,
            "SIM_FAILURE_RATE": "0",
            "SIM_LATENCY_SCALE": "0",
            "RETRY_MIN_BACKOFF_MS": "20",
            "RETRY_MAX_BACKOFF_MS": "200",
            **env,
        },
        log_dir=log_dir,
    )
