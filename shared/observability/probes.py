"""`/metrics` and `/health` of a service, from a tiny HTTP server in a daemon thread.

The API serves both on its own port; every other service calls `start_probes` at its edge. The server is
the standard library's threading WSGI server with prometheus_client's WSGI app behind `/metrics`, so a scrape
never runs on (or waits for) a service's event loop, and a stuck loop is still reported as one.

Healthy means every loop of the service did its work recently: each loop owns a `Heartbeat` and calls
`ok()` after every pass that reached Redis (or PostgreSQL), `failed(reason)` when one could not. `/health`
is 503 while any heartbeat is failing, has not beaten yet (starting), or is older than `stale_after_s` (a
stuck or blocked loop). A beat is two attribute writes: loops beat on every pass, at no measurable cost.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import orjson
from loguru import logger
from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from shared.settings import Settings

#: Each service's default METRICS_PORT, so that all of them run side by side on one host (`make run`).
DEFAULT_METRICS_PORTS: dict[str, int] = {
    "quote-stream": 9101,
    "execution-worker": 9102,
    "db-sync": 9103,
    "limit-worker": 9104,
    "sniper-worker": 9105,
}
#: Replica N of a service listens on its default port + STRIDE·(N−1): 9102, 9112, 9122 … never another's.
REPLICA_PORT_STRIDE = 10
#: How often the probes' server wakes with nothing to serve (socketserver's default is twice a second): it
#: wakes for requests, and `ProbeServer.close` knocks to stop it, so this is only a backstop.
IDLE_POLL_S = 60.0


def metrics_port(service: str, replica: int = 1) -> int:
    """The port replica `replica` (1-based) of `service` listens on when run by the local runner."""
    return DEFAULT_METRICS_PORTS[service] + REPLICA_PORT_STRIDE * (replica - 1)


def service_registry() -> CollectorRegistry:
    """A registry for one service, with the process's CPU, memory and file descriptors (read at scrape)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


class Heartbeat:
    """One loop's sign of life (see the module's docstring)."""

    __slots__ = ("name", "stale_after_s", "_last_ok", "_error")

    def __init__(self, name: str, stale_after_s: float) -> None:
        self.name = name
        self.stale_after_s = stale_after_s
        self._last_ok: float | None = None
        self._error: str | None = None

    def ok(self) -> None:
        self._last_ok = time.monotonic()
        self._error = None

    def failed(self, reason: object) -> None:
        self._error = str(reason).splitlines()[0][:200] if str(reason) else type(reason).__name__

    def verdict(self, now: float) -> tuple[bool, str]:
        if self._error is not None:
            return False, f"failing: {self._error}"
        if self._last_ok is None:
            return False, "starting"
        age = now - self._last_ok
        if age > self.stale_after_s:
            return False, f"stale: last pass {age:.1f} s ago"
        return True, "ok"


class Health:
    """A service's heartbeats, and what `/health` answers from them."""

    def __init__(self, service: str, stale_after_s: float = 10.0) -> None:
        self.service = service
        self.stale_after_s = stale_after_s
        self._beats: list[Heartbeat] = []

    def heartbeat(self, name: str, stale_after_s: float | None = None) -> Heartbeat:
        beat = Heartbeat(name, self.stale_after_s if stale_after_s is None else stale_after_s)
        self._beats.append(beat)
        return beat

    def verdicts(self) -> dict[str, tuple[bool, str]]:
        """Each heartbeat's name → (passing, what /health says of it)."""
        now = time.monotonic()
        return {beat.name: beat.verdict(now) for beat in list(self._beats)}

    def report(self) -> tuple[bool, dict[str, object]]:
        verdicts = self.verdicts()
        healthy = all(ok for ok, _ in verdicts.values())
        checks = {name: detail for name, (_, detail) in verdicts.items()}
        return healthy, {"status": "ok" if healthy else "unhealthy", "service": self.service, "checks": checks}


class HealthMetrics(Collector):
    """`/health`'s verdicts as a gauge too, so Prometheus can graph and alert on them."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "engine_health_ok", "1 while this loop of the service passes its /health check", labels=["check"]
        )
        for name, (ok, _) in self.health.verdicts().items():
            family.add_metric([name], int(ok))
        yield family


@dataclass(frozen=True)
class ServiceProbes:
    """What a service's code registers its metrics in and beats on."""

    registry: CollectorRegistry
    health: Health

    @classmethod
    def for_service(cls, service: str, settings: Settings) -> ServiceProbes:
        health = Health(service, settings.health_stale_after_s)
        registry = service_registry()
        registry.register(HealthMetrics(health))
        return cls(registry, health)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        """Scrapes and probes every few seconds are not events worth a log line."""


class ProbeServer:
    """The WSGI app (`/metrics`, `/health`) and the daemon thread that serves it."""

    def __init__(self, registry: CollectorRegistry, health: Health) -> None:
        self.health = health
        self._metrics: WSGIApplication = make_wsgi_app(registry)
        self._server: ThreadingWSGIServer | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics(environ, start_response)
        if path == "/health":
            healthy, body = self.health.report()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [orjson.dumps(body)]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: /metrics and /health live here\n"]

    def listen(self, host: str, port: int) -> ProbeServer:
        """Bind now (OSError if the port is taken) and serve from a daemon thread."""
        server = self._server = make_server(host, port, self, ThreadingWSGIServer, handler_class=_Quiet)
        threading.Thread(target=lambda: server.serve_forever(IDLE_POLL_S), name="probes", daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "not listening"
        return self._server.server_address[1]

    def close(self) -> None:
        """Stop serving. The serving thread looks for the request to stop only after a request or a poll,
        and it polls rarely (IDLE_POLL_S): so it is knocked on until it has seen it."""
        server, self._server = self._server, None
        if server is None:
            return
        stopping = threading.Thread(target=server.shutdown, name="probes-shutdown")
        stopping.start()
        host, port = server.server_address[:2]
        while stopping.is_alive():
            with contextlib.suppress(OSError):
                socket.create_connection((_reachable(str(host)), port), timeout=1).close()
            stopping.join(0.05)
        server.server_close()


def _reachable(host: str) -> str:
    """An address to connect to for a server bound to `host` (a wildcard is reached on loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def start_probes(service: str, settings: Settings, probes: ServiceProbes) -> ProbeServer | None:
    """Serve `probes` on METRICS_HOST:METRICS_PORT (default: the service's own port; 0 = not at all).

    A port already taken is a warning, not a crash: the service's work matters more than its metrics, and
    two engines on one host (a benchmark beside `make run`) would otherwise take each other down."""
    port = settings.metrics_port if settings.metrics_port is not None else DEFAULT_METRICS_PORTS[service]
    if port == 0:
        logger.info("METRICS_PORT=0: serving no /metrics or /health")
        return None
    try:
        server = ProbeServer(probes.registry, probes.health).listen(settings.metrics_host, port)
    except OSError as exc:
        logger.warning(
            "cannot serve /metrics and /health on {}:{} ({}); running without them", settings.metrics_host, port, exc
        )
        return None
    logger.info("metrics on http://{}:{}/metrics, health on /health", settings.metrics_host, server.port)
    return server
