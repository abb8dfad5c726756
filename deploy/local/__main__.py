"""`make run`: the whole engine on this machine, with no Docker and no installed servers.

    python -m deploy.local [--only api,db-sync] [--replicas execution-worker=2,db-sync=2] [--no-migrate]

1. Servers: REDIS_URL / DATABASE_URL when set, else embedded Redis and PostgreSQL keeping their data in
   `.data/` under the project root (env DATA_DIR overrides), restarted on the same port or socket if they
   die (watchdog.py); the embedded Redis's maxmemory is EMBEDDED_REDIS_MAXMEMORY.
2. Migrations, once: `python -m shared.persistence.migrate`; the services start only if it exits 0.
3. Every service in SERVICES as its own child process, with REDIS_URL, DATABASE_URL, API_HOST (default
   127.0.0.1) and API_PORT (default 8000) in its environment, output prefixed with its name, restarted with
   back-off if it exits (see supervisor.py), until Ctrl-C or SIGTERM stops the children, then the servers.
   `--replicas` runs several processes of a worker (`execution-worker.1`, `execution-worker.2`, ...): every
   worker is built to share its queue or stream with others; the API is one process on its port.
4. Every service but the API gets its own METRICS_PORT for `/metrics` and `/health` (its default, 9101-9105;
   replica N: + 10·(N−1)), and the runner prints where each one is. METRICS_PORT=0 turns them all off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from deploy.local import ROOT, SERVICES, data_dir
from deploy.local.embedded import resolve_servers
from deploy.local.supervisor import Output, Supervisor
from deploy.local.watchdog import Restartable, watch
from shared.observability.probes import DEFAULT_METRICS_PORTS, metrics_port
from shared.settings import Settings, redacted

MIGRATE_MODULE = "shared.persistence.migrate"

#: For testing the runner itself: a JSON object {"name": ["argv", ...]} that replaces SERVICES.
SERVICES_OVERRIDE_ENV = "DEPLOY_LOCAL_SERVICES"


def parse_replicas(spec: str | None) -> dict[str, int]:
    """`execution-worker=2,db-sync=2` → {"execution-worker": 2, "db-sync": 2}."""
    counts: dict[str, int] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        name, _, count = item.partition("=")
        if not count.strip().isdigit() or int(count) < 1:
            raise SystemExit(f"--replicas wants NAME=COUNT with COUNT >= 1, got {item.strip()!r}")
        counts[name.strip()] = int(count)
    if "api" in counts and counts["api"] > 1:
        raise SystemExit("the API listens on API_PORT: run one (compose or a load balancer scale it)")
    return counts


def with_replicas(commands: dict[str, list[str]], counts: Mapping[str, int]) -> dict[str, list[str]]:
    if unknown := [name for name in counts if name not in commands]:
        raise SystemExit(f"--replicas names unknown service(s) {', '.join(unknown)}; known: {', '.join(commands)}")
    result: dict[str, list[str]] = {}
    for name, argv in commands.items():
        count = counts.get(name, 1)
        for index in range(1, count + 1):
            result[name if count == 1 else f"{name}.{index}"] = argv
    return result


def service_commands(only: str | None) -> dict[str, list[str]]:
    if override := os.environ.get(SERVICES_OVERRIDE_ENV):
        commands = {name: list(argv) for name, argv in json.loads(override).items()}
    else:
        commands = {name: [sys.executable, "-m", module] for name, module in SERVICES.items()}
    if only:
        wanted = [name.strip() for name in only.split(",") if name.strip()]
        if unknown := [name for name in wanted if name not in commands]:
            raise SystemExit(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(commands)}")
        commands = {name: commands[name] for name in wanted}
    return commands


def metrics_ports(names: Sequence[str]) -> dict[str, int]:
    """Each process's METRICS_PORT: `execution-worker.2` → the execution worker's port + 10 (see probes.py)."""
    ports = {}
    for name in names:
        service, _, replica = name.partition(".")
        if service in DEFAULT_METRICS_PORTS:
            ports[name] = metrics_port(service, int(replica or 1))
    return ports


def probe_lines(names: Sequence[str], ports: Mapping[str, int], env: Mapping[str, str]) -> list[str]:
    """Where to find each service's metrics and health, for the runner to print."""
    host = env.get("METRICS_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    api = f"http://{env.get('API_HOST', '127.0.0.1')}:{env.get('API_PORT', '8000')}"
    width = max(len(name) for name in names)
    lines = [f"{'api':<{width}}  {api}/metrics  {api}/health"] if "api" in names else []
    lines += [
        f"{name:<{width}}  http://{host}:{port}/metrics  http://{host}:{port}/health" for name, port in ports.items()
    ]
    return lines


async def supervise(
    services: Mapping[str, Sequence[str]],
    env: Mapping[str, str],
    out: Output,
    migrate: bool,
    servers: Mapping[str, Restartable] | None = None,
) -> int:
    supervisor = Supervisor(env=env, cwd=ROOT, out=out)
    supervisor.handle_signals()
    # From the start: migrations need PostgreSQL too.
    watchdog = asyncio.create_task(watch(servers or {}, supervisor.stopping, out))
    try:
        return await _start_services(supervisor, services, env, out, migrate)
    finally:
        supervisor.stopping.set()
        await watchdog


async def _start_services(
    supervisor: Supervisor, services: Mapping[str, Sequence[str]], env: Mapping[str, str], out: Output, migrate: bool
) -> int:
    if migrate:
        rc = await supervisor.run_once("migrate", [sys.executable, "-m", MIGRATE_MODULE])
        if supervisor.stopping.is_set():
            return 0
        if rc != 0:
            out.line("runner", f"migrations failed (exit code {rc}); not starting the services")
            return 1
    out.line("runner", f"starting {', '.join(services)} (Ctrl-C stops everything)")
    ports = {} if env.get("METRICS_PORT") == "0" else metrics_ports(list(services))
    for line in probe_lines(list(services), ports, env):
        out.line("runner", line)
    await supervisor.run(services, {name: {"METRICS_PORT": str(port)} for name, port in ports.items()})
    return 0


def _redis_maxmemory() -> str:
    try:
        return Settings().embedded_redis_maxmemory
    except ValidationError as exc:
        raise SystemExit(f"invalid settings: {exc}") from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__.split("\n")[0])
    parser.add_argument("--only", metavar="NAMES", help="comma-separated services to run, e.g. api,db-sync")
    parser.add_argument("--replicas", metavar="NAME=N,...", help="processes per worker, e.g. execution-worker=2")
    parser.add_argument("--no-migrate", action="store_true", help="skip the migrations step")
    args = parser.parse_args(argv)

    services = with_replicas(service_commands(args.only), parse_replicas(args.replicas))
    out = Output(["runner", "migrate", "redis", "postgres", *services])
    folder = data_dir()
    servers_env = (("Redis", "REDIS_URL"), ("PostgreSQL", "DATABASE_URL"))
    embedded = [name for name, var in servers_env if not os.environ.get(var)]
    signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM while the servers start still stops them
    try:
        started = time.monotonic()
        if embedded:
            out.line("runner", f"starting embedded {' and '.join(embedded)} in {folder}")
        with resolve_servers(folder, redis_maxmemory=_redis_maxmemory()) as servers:
            out.line("runner", f"REDIS_URL={redacted(servers.redis_url)}")
            out.line("runner", f"DATABASE_URL={redacted(servers.database_url)} ({time.monotonic() - started:.1f} s)")
            env = {**os.environ, "REDIS_URL": servers.redis_url, "DATABASE_URL": servers.database_url}
            env.setdefault("API_HOST", "127.0.0.1")
            env.setdefault("API_PORT", "8000")
            env["PYTHONUNBUFFERED"] = "1"
            try:
                return asyncio.run(supervise(services, env, out, not args.no_migrate, servers.embedded))
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):  # let nothing interrupt the servers' shutdown
                    signal.signal(sig, signal.SIG_IGN)
                if embedded:
                    out.line("runner", f"stopping embedded {' and '.join(embedded)}")
    except KeyboardInterrupt:
        out.line("runner", "interrupted")
        return 0
    finally:
        out.line("runner", "bye")


if __name__ == "__main__":
    sys.exit(main())
