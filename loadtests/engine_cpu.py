"""Which processes are the engine under test, and how much CPU each spent between two readings.

The engine is found from the port its API listens on: that process's environment names the Redis and
PostgreSQL it uses, and every `python -m services.<name>` process with the same REDIS_URL is one of its
services. Redis is the process listening on that Redis port; PostgreSQL is the postmaster listening on that
socket (or port) plus its backends. Servers of other engines on the machine are therefore never counted.

CPU time is user + system. A server's reaped children (PostgreSQL backends that ended, Redis's fork for an
AOF rewrite) are counted through the parent's `children_*` times, so they are not lost when they exit.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

import psutil

SERVICE_MODULE = re.compile(r"-m\s+services\.(\w+)")
RUNNER_MODULE = "deploy.local"


@dataclass
class EngineProcesses:
    """Groups of pids by what they are: a service name, "runner", "redis" or "postgres"."""

    redis_url: str = ""
    database_url: str = ""
    #: REDIS_URL is one node of a Redis Cluster: "redis" is then every node, and "redis:<port>" each one.
    redis_cluster: bool = False
    services: dict[str, list[int]] = field(default_factory=dict)
    #: Processes whose own CPU, plus that of their reaped children, belongs to a server.
    servers: dict[str, list[int]] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{name}={pids}" for name, pids in {**self.services, **self.servers}.items()]
        return " ".join(parts)


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except (psutil.Error, OSError):
        return ""


def _environ(process: psutil.Process) -> dict[str, str]:
    try:
        return process.environ()
    except (psutil.Error, OSError):
        return {}


def _listeners(port: int | None, unix_path: str | None) -> set[int]:
    pids = set()
    kinds = ["unix"] if unix_path else ["inet"]
    for kind in kinds:
        for conn in psutil.net_connections(kind=kind):
            if conn.pid is None:
                continue
            on_socket = bool(unix_path) and conn.laddr == unix_path
            on_port = bool(port) and conn.status == psutil.CONN_LISTEN and getattr(conn.laddr, "port", None) == port
            if on_socket or on_port:
                pids.add(conn.pid)
    return pids


def _postgres_socket(database_url: str) -> tuple[int | None, str | None]:
    url = urlparse(database_url.replace("+psycopg", ""))
    host = parse_qs(url.query).get("host", [url.hostname or ""])[0]
    port = url.port or 5432
    if host.startswith("/"):
        return None, f"{host}/.s.PGSQL.{port}"
    return port, None


def find_engine(api_port: int) -> EngineProcesses:
    """The processes of the engine whose API listens on `api_port` (same user, Linux)."""
    api_pids = [pid for pid in _listeners(api_port, None)]
    if not api_pids:
        raise SystemExit(f"no process listens on port {api_port}: is the engine running?")
    env = _environ(psutil.Process(api_pids[0]))
    engine = EngineProcesses(
        redis_url=env.get("REDIS_URL", ""),
        database_url=env.get("DATABASE_URL", ""),
        redis_cluster=env.get("REDIS_CLUSTER", "").lower() in ("1", "true", "yes", "on"),
    )
    for process in psutil.process_iter():
        cmdline = _cmdline(process)
        match = SERVICE_MODULE.search(cmdline)
        if match and _environ(process).get("REDIS_URL") == engine.redis_url:
            engine.services.setdefault(match.group(1), []).append(process.pid)
        elif f"-m {RUNNER_MODULE}" in cmdline and process.pid == _runner_of(api_pids[0]):
            engine.servers.setdefault("runner", []).append(process.pid)
    redis_port = urlparse(engine.redis_url).port
    if redis_port and engine.redis_cluster:
        for port in cluster_ports(engine.redis_url):
            engine.servers[f"redis:{port}"] = sorted(_listeners(port, None))
        engine.servers["redis"] = sorted(
            pid for name, pids in engine.servers.items() if name.startswith("redis:") for pid in pids
        )
    elif redis_port:
        engine.servers["redis"] = sorted(_listeners(redis_port, None))
    if engine.database_url:
        pg_port, pg_socket = _postgres_socket(engine.database_url)
        engine.servers["postgres"] = sorted(_listeners(pg_port, pg_socket))
    return engine


def cluster_ports(redis_url: str) -> list[int]:
    """The ports of every node of the cluster `redis_url` names a node of (this machine's, by CLUSTER NODES)."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        nodes = client.execute_command("CLUSTER NODES")  # redis-py parses it: `ip:port[@bus]` → its fields
    finally:
        client.close()
    port = urlparse(redis_url).port
    # A node that met no other does not know its own address: `:port`.
    return sorted({int(address.split("@")[0].rpartition(":")[2] or port or 0) for address in nodes})


def _runner_of(pid: int) -> int | None:
    """The `python -m deploy.local` that started `pid`, if any (it pumps every service's log lines)."""
    try:
        for parent in psutil.Process(pid).parents():
            if f"-m {RUNNER_MODULE}" in _cmdline(parent):
                return parent.pid
    except psutil.Error:
        pass
    return None


def _own_cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _tree_cpu_s(pid: int) -> float:
    """The process, its live descendants, and its reaped children: a server's whole CPU."""
    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in root.children(recursive=True):
            # One that ended between listing and reading is in children_* from now on.
            with contextlib.suppress(psutil.Error):
                total += _own_cpu_s(child)
        return total
    except psutil.Error:
        return 0.0


def cpu_seconds(engine: EngineProcesses) -> dict[str, float]:
    """Cumulative CPU seconds per group, read now. Subtract two readings to get a run's share."""
    reading: dict[str, float] = {}
    for name, pids in engine.services.items():
        total = 0.0
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                total += _own_cpu_s(psutil.Process(pid))
        reading[name] = total
    for name, pids in engine.servers.items():
        if name == "runner":  # its children are the services, already counted
            reading[name] = sum(_own_cpu_s(psutil.Process(pid)) for pid in pids if psutil.pid_exists(pid))
        else:
            reading[name] = sum(_tree_cpu_s(pid) for pid in pids)
    return reading


def per_order_ms(before: dict[str, float], after: dict[str, float], orders: int) -> dict[str, float]:
    """CPU ms per completed order per group between two readings."""
    return {name: (after[name] - before.get(name, 0.0)) * 1000 / max(orders, 1) for name in after}
