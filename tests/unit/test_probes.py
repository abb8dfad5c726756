"""/metrics and /health of the non-API services: heartbeats, the probe server, its ports."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from prometheus_client import Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared.observability.probes import (
    DEFAULT_METRICS_PORTS,
    IDLE_POLL_S,
    REPLICA_PORT_STRIDE,
    Health,
    ProbeServer,
    ServiceProbes,
    metrics_port,
    service_registry,
    start_probes,
)
from shared.settings import Settings


@pytest.fixture
def probes():
    return ServiceProbes(service_registry(), Health("test-service", stale_after_s=5))


@pytest.fixture
def server(probes):
    server = ProbeServer(probes.registry, probes.health).listen("127.0.0.1", 0)
    yield server
    server.close()


def get(server: ProbeServer, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=5)


def test_health_is_starting_until_every_loop_has_beaten_then_ok(probes, server):
    ticks, chores = probes.health.heartbeat("ticks"), probes.health.heartbeat("housekeeping")
    response = get(server, "/health")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unhealthy",
        "service": "test-service",
        "checks": {"ticks": "starting", "housekeeping": "starting"},
    }
    ticks.ok()
    assert get(server, "/health").status_code == 503  # one loop alive is not enough
    chores.ok()
    response = get(server, "/health")
    assert response.status_code == 200
    checks = {"ticks": "ok", "housekeeping": "ok"}
    assert response.json() == {"status": "ok", "service": "test-service", "checks": checks}


def test_a_failing_loop_is_unhealthy_at_once_and_recovers_on_its_next_good_pass(probes, server):
    beat = probes.health.heartbeat("quotes")
    beat.ok()
    beat.failed(ConnectionError("Error 111 connecting to 127.0.0.1:6399. Connection refused.\nmore detail"))
    response = get(server, "/health")
    assert response.status_code == 503
    reason = "failing: Error 111 connecting to 127.0.0.1:6399. Connection refused."
    assert response.json()["checks"] == {"quotes": reason}
    beat.ok()
    assert get(server, "/health").status_code == 200


def test_a_loop_that_stops_beating_goes_stale():
    health = Health("svc")
    beat = health.heartbeat("loop", stale_after_s=0.05)
    beat.ok()
    assert health.report()[0] is True
    time.sleep(0.1)
    healthy, body = health.report()
    assert healthy is False and body["checks"]["loop"].startswith("stale: last pass 0.")


def test_metrics_are_prometheus_text_with_the_process_collector(probes, server):
    Counter("engine_things_total", "things", ["kind"], registry=probes.registry).labels("a").inc(3)
    response = get(server, "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("engine_things_total", (("kind", "a"),))] == 3
    assert ("process_cpu_seconds_total", ()) in samples  # what the dashboard's CPU panels read


def test_other_paths_are_404(server):
    assert get(server, "/").status_code == 404


def test_start_probes_serves_on_the_configured_port_and_0_turns_them_off(probes):
    port = _free_port()
    server = start_probes("quote-stream", Settings(metrics_port=port), probes)
    try:
        assert server is not None and server.port == port
        assert get(server, "/metrics").status_code == 200
    finally:
        server.close()
    assert start_probes("quote-stream", Settings(metrics_port=0), probes) is None


def test_a_taken_port_is_a_warning_not_a_crash(probes):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert start_probes("quote-stream", Settings(metrics_port=port), probes) is None


def test_default_ports_of_every_service_and_replica_never_collide():
    ports = [metrics_port(service, replica) for service in DEFAULT_METRICS_PORTS for replica in range(1, 11)]
    assert len(set(ports)) == len(ports)
    assert metrics_port("execution-worker", 2) == DEFAULT_METRICS_PORTS["execution-worker"] + REPLICA_PORT_STRIDE
    assert 8000 not in ports  # the API's


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_health_verdicts_are_also_a_gauge_per_check():
    probes = ServiceProbes.for_service("limit-worker", Settings())
    probes.health.heartbeat("ticks").ok()
    probes.health.heartbeat("housekeeping")
    text = generate_latest(probes.registry).decode()
    assert 'engine_health_ok{check="ticks"} 1.0' in text
    assert 'engine_health_ok{check="housekeeping"} 0.0' in text


def test_close_stops_a_server_that_polls_rarely_at_once(probes):
    """The server wakes for requests, not on a timer (IDLE_POLL_S is long): close knocks until it stops,
    rather than waiting out a poll."""
    server = ProbeServer(probes.registry, probes.health).listen("127.0.0.1", 0)
    port = server.port
    assert get(server, "/health").status_code in (200, 503)
    began = time.monotonic()
    server.close()
    assert time.monotonic() - began < IDLE_POLL_S / 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
