"""`make run` survives its own servers: `order-engine up` as a user runs it (embedded Redis and PostgreSQL in its
data dir), under a steady load of market, limit and sniper orders, while its Redis and then its PostgreSQL are
SIGKILLed from outside. The runner must start each again on the same port or socket, the engine must recover by
itself, and every accepted order must end (or rest legitimately) exactly once, PostgreSQL agreeing with Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil
import redis

from shared.persistence.batch import make_engine
from tests.faults.invariants import settle
from tests.faults.load import LoadDriver
from tests.faults.test_fault_injection import ENGINE_ENV
from tests.support.cli import ORDER_ENGINE
from tests.support.processes import ROOT, free_port

DRAIN_TIMEOUT_S = 60


class Runner:
    """`order-engine up` as a process, its output collected line by line."""

    def __init__(self, data_dir: Path, api_port: int) -> None:
        env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "DATABASE_URL")}
        env |= ENGINE_ENV | {"DATA_DIR": str(data_dir), "API_PORT": str(api_port), "METRICS_PORT": "0"}
        self.data_dir, self.api_url = data_dir, f"http://127.0.0.1:{api_port}"
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [str(ORDER_ENGINE), "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def said(self, prefix: str, text: str) -> list[str]:
        return [line for line in self.lines if line.startswith(prefix) and text in line]

    def wait_for_line(self, prefix: str, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "\n".join(self.lines[-60:])
            if found := self.said(prefix, text):
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no `{prefix} … {text}` within {timeout} s:\n" + "\n".join(self.lines[-60:]))

    def ready_within(self, timeout: float) -> float:
        """Seconds until the API's /ready answers 200 (Redis and PostgreSQL both reachable)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            assert self.process.poll() is None, "\n".join(self.lines[-60:])
            try:
                if httpx.get(f"{self.api_url}/ready", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the API was not ready within {timeout} s:\n" + "\n".join(self.lines[-60:]))

    def server_pids(self) -> tuple[int, int]:
        """redis-server's and the postmaster's pids, from their own pid files."""
        redis_pid = int((self.data_dir / "redis" / "redis.pid").read_text().split()[0])
        postmaster_pid = int((self.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        return redis_pid, postmaster_pid

    def postgres_socket_dir(self) -> str:
        return (self.data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[4]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._reader.join(5)


def kill_and_time(runner: Runner, pid: int, name: str) -> float:
    """SIGKILL a server; once the runner says it restarted it, seconds from the kill until the API is ready."""
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    runner.wait_for_line(name, "restarted: pid", timeout=30)
    runner.ready_within(30)
    return round(time.monotonic() - killed, 2)


def test_make_run_restarts_its_killed_redis_and_postgres_and_every_accepted_order_ends_once(tmp_path):
    began = time.monotonic()
    runner = Runner(tmp_path / "data", free_port())
    load = None
    try:
        runner.ready_within(120)
        redis_url = (tmp_path / "data" / "redis" / "redis.url").read_text().strip()
        database_url = runner.wait_for_line("runner", "DATABASE_URL=", 1).split("DATABASE_URL=", 1)[1].split(" (")[0]
        redis_pid, postmaster_pid = runner.server_pids()
        socket_dir = runner.postgres_socket_dir()

        load = LoadDriver(runner.api_url, rate_per_s=8, give_up_after_s=40).start()
        time.sleep(8)
        redis_down_s = kill_and_time(runner, redis_pid, "redis")
        time.sleep(8)
        postgres_down_s = kill_and_time(runner, postmaster_pid, "postgres")
        time.sleep(8)
        load.stop()

        new_redis_pid, new_postmaster_pid = runner.server_pids()
        new_socket_dir = runner.postgres_socket_dir()
        client = redis.Redis.from_url(redis_url, socket_timeout=10)  # the URL the services had all along
        db = make_engine(database_url)
        try:
            assert client.info("server")["process_id"] == new_redis_pid != redis_pid
            verdict, drained_s = settle(client, db, set(load.accepted), DRAIN_TIMEOUT_S)
            used_memory = client.info("memory")["used_memory_human"]
        finally:
            client.close()
            db.dispose()
    finally:
        if load is not None:
            load.stop()
        rc = runner.stop()
    accepted = load.accepted_by_type()
    print(
        f"\naccepted {accepted}, statuses {verdict.by_status}; API ready again {redis_down_s} s after kill -9 redis, "
        f"{postgres_down_s} s after kill -9 postgres; drained in {drained_s:.1f} s; Redis uses {used_memory}; "
        f"{time.monotonic() - began:.0f} s"
    )
    print("\n".join(runner.said("redis", "") + runner.said("postgres", "")))

    assert accepted.get("market") and accepted.get("limit"), accepted
    assert verdict.ok, f"{verdict.counts()}: {verdict.violations[:10]}"
    # Each server was restarted once, in place: Redis on its port (the URL above), PostgreSQL on its socket.
    assert len(runner.said("redis", "restarted: pid")) == 1 and len(runner.said("postgres", "restarted: pid")) == 1
    assert new_postmaster_pid != postmaster_pid and new_socket_dir == socket_dir
    assert rc == 0 and runner.said("runner", "bye")
    # The owner is gone: so are its servers, the restarted ones too.
    for pid in (new_redis_pid, new_postmaster_pid):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
