"""The compose stack the tests in this folder attack: a Docker engine (found, or a private one started),
the base images (upstream, or stand-ins), the real compose.yaml built and brought up with `up --wait`.

Everything is taken down at the end, on failure and on Ctrl-C or SIGTERM too: the project with its volumes,
then the private daemon. The figures (build, image size, up → ready) are printed and kept in
reports/compose.json.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tests.compose.base_images import STANDINS_OVERRIDE, docker, ensure_standins, needs_standins
from tests.compose.docker_daemon import DockerEngine, PrivateDaemon, find_or_start_engine
from tests.compose.report import FIGURES
from tests.compose.report import save as save_figures
from tests.compose.stack import ROOT, ComposeStack
from tests.support.processes import free_port

PROJECT = "order-engine-compose-test"
ENGINE_IMAGE = "order-engine:local"

#: The engine's settings for the test, through compose.yaml's env_file (so the test proves that path too).
#: Faster than the defaults where waiting would only make the run longer: launches come early, a dead
#: worker's messages are re-delivered after 3 s instead of 60 s.
ENGINE_SETTINGS = {
    "LOG_JSON": "1",
    "SIM_LATENCY_SCALE": "0.25",  # a swap ~0.6 s: orders are in flight when the worker is killed
    "SIM_DROP_RATE": "0",  # a dropped transaction would take a minute to be known dead and re-sent
    "SIM_LAUNCH_FIRST_S": "5",
    "SIM_LAUNCH_INTERVAL_S": "40",
    "SIM_LIQUIDITY_STEP_S": "3",
    "WORKER_HEARTBEAT_TIMEOUT_MS": "3000",
    "WORKER_MAINTENANCE_CHANCE": "100000",
    "ORDER_LEASE_MS": "3000",
    "RETRY_MIN_BACKOFF_MS": "300",
    "RETRY_MAX_BACKOFF_MS": "3000",
}


#: What compose.yaml itself reads from the same file: Redis has no default password, so the test gives one.
COMPOSE_SETTINGS = {"REDIS_PASSWORD": "compose-test-0f3a9c", "REDIS_MAXMEMORY": "256mb"}


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("compose test")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session", autouse=True)
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM (CI cancelled, `timeout`) unwinds like Ctrl-C, so the finalizers below take everything down."""

    def interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    daemon = PrivateDaemon()
    started = time.monotonic()
    engine = find_or_start_engine(daemon)
    FIGURES["docker engine"] = (
        f"private daemon, started in {time.monotonic() - started:.1f} s" if engine.private else engine.host
    )
    try:
        yield engine
    finally:
        if engine.private:
            daemon.stop()


@pytest.fixture(scope="session")
def stack(docker_engine: DockerEngine, tmp_path_factory, request) -> Iterator[ComposeStack]:
    overrides = []
    started = time.monotonic()
    if needs_standins(docker_engine):
        built = ensure_standins(docker_engine)
        FIGURES["base images"] = f"stand-ins, {'built: ' + ', '.join(built) if built else 'cached'} " \
                                 f"({time.monotonic() - started:.1f} s)"  # fmt: skip
        overrides.append(STANDINS_OVERRIDE)
    else:
        FIGURES["base images"] = "upstream"
    env_file = tmp_path_factory.mktemp("compose") / "engine.env"
    settings = {**ENGINE_SETTINGS, **COMPOSE_SETTINGS}
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    stack = ComposeStack(docker_engine, PROJECT, env_file, free_port(), overrides)
    stack.down("--volumes")  # what a killed run may have left (a restarted daemon restarts its containers)
    try:
        started = time.monotonic()
        stack.compose("build", timeout=1200)
        FIGURES["engine image build"] = f"{time.monotonic() - started:.1f} s"
        FIGURES["engine image size"] = f"{image_size_mb(docker_engine, ENGINE_IMAGE):.0f} MB"
        FIGURES["up → ready (first)"] = f"{stack.up():.1f} s"
        yield stack
    finally:
        (ROOT / "reports").mkdir(exist_ok=True)
        if request.session.testsfailed:  # every service's lines, for the failure's context
            logs = stack.compose("logs", "--no-color", "--timestamps", check=False).stdout
            (ROOT / "reports" / "compose-logs.txt").write_text(logs)
        try:
            stack.down("--volumes", "--timeout", "10")
        finally:
            if docker_engine.private:  # layers of earlier builds nothing names any more: keep only what is in use
                docker(docker_engine, "image", "prune", "--force", capture_output=True, check=False)
            save_figures()


def image_size_mb(engine: DockerEngine, image: str) -> float:
    run = docker(engine, "image", "inspect", "-f", "{{.Size}}", image, capture_output=True, check=True)
    return int(run.stdout.strip()) / 1e6
