"""One compose project of the real compose.yaml, driven the way a user drives it: `docker-compose` commands.

The project has its own name, its own published port and its own env file (the engine's settings, through
compose.yaml's `env_file`), so it never meets a stack the user runs. What a user cannot see from the
outside (a container's IP, the host PID of its process) comes from `docker inspect`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.compose.docker_daemon import DockerEngine

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
#: The docker-compose of the project's dev dependencies (Compose v5, from PyPI), next to this interpreter.
COMPOSE_BIN = str(Path(os.sys.executable).with_name("docker-compose"))
#: Variables compose would take from the user's shell before the env file: the test's file decides them.
SHELL_VARIABLES_DROPPED = ("API_BIND", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "REDIS_MAXMEMORY")


@dataclass
class ComposeStack:
    engine: DockerEngine
    project: str
    env_file: Path  # the engine's settings (ENGINE_ENV_FILE) and compose's own variables (--env-file)
    api_port: int
    overrides: list[Path] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.api_port}"

    @property
    def env(self) -> dict[str, str]:
        # Compose reads API_PORT etc. from the shell before the env file: set ours, drop the user's.
        env = {k: v for k, v in self.engine.env.items() if k not in SHELL_VARIABLES_DROPPED}
        return {**env, "API_PORT": str(self.api_port), "ENGINE_ENV_FILE": str(self.env_file)}

    def compose(self, *args: str, timeout: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        files = [arg for path in (COMPOSE_FILE, *self.overrides) for arg in ("-f", str(path))]
        command = [COMPOSE_BIN, "-p", self.project, *files, "--env-file", str(self.env_file), *args]
        run = subprocess.run(command, cwd=ROOT, env=self.env, text=True, capture_output=True, timeout=timeout, **kwargs)
        if check and run.returncode != 0:
            raise AssertionError(f"`docker-compose {' '.join(args)}` exited {run.returncode}:\n{run.stderr[-6000:]}")
        return run

    # --- what a user does ------------------------------------------------------------------------------
    def up(self, *args: str, timeout: float = 300) -> float:
        """`up -d --wait` (health checks decide readiness); returns the seconds it took."""
        started = time.monotonic()
        self.compose("up", "--detach", "--wait", "--wait-timeout", str(int(timeout)), *args, timeout=timeout + 60)
        return time.monotonic() - started

    def down(self, *args: str) -> None:
        self.compose("down", "--remove-orphans", *args, timeout=300)

    def logs(self, service: str, *args: str) -> str:
        return self.compose("logs", "--no-color", *args, service).stdout

    def exec(self, service: str, *command: str, check: bool = False) -> subprocess.CompletedProcess:
        return self.compose("exec", "-T", service, *command, check=check, timeout=120)

    # --- what the test looks at from outside -----------------------------------------------------------
    def containers(self, service: str) -> list[dict]:
        """`docker inspect` of the service's containers, by replica number."""
        ids = self.compose("ps", "--all", "--quiet", service).stdout.split()
        if not ids:
            return []
        run = subprocess.run(
            ["docker", "inspect", *ids], env=self.engine.env, text=True, capture_output=True, check=True
        )
        return sorted(json.loads(run.stdout), key=replica_number)

    def container(self, service: str, replica: int = 1) -> dict:
        for container in self.containers(service):
            if replica_number(container) == replica:
                return container
        raise LookupError(f"no container {service}-{replica} in {self.project}")

    def ip(self, service: str) -> str:
        """The service's address on the project's network (reachable from this host: the network is a bridge)."""
        networks = self.container(service)["NetworkSettings"]["Networks"]
        return next(iter(networks.values()))["IPAddress"]

    def health(self, service: str, replica: int = 1) -> str:
        state = self.container(service, replica)["State"]
        return state.get("Health", {}).get("Status", state["Status"])

    def crash(self, service: str, replica: int = 1) -> int:
        """SIGKILL the service's own process (the child of the container's init), as a crash would.

        `docker compose kill` would not do: Docker counts a container it killed itself as stopped by hand
        and its restart policy leaves it down. Returns the container's restart count before the crash."""
        container = self.container(service, replica)
        init_pid = container["State"]["Pid"]
        children = Path(f"/proc/{init_pid}/task/{init_pid}/children").read_text().split()
        assert children, f"{service}-{replica}: its init (pid {init_pid}) has no child to kill"
        os.kill(int(children[0]), signal.SIGKILL)
        return int(container["RestartCount"])


def replica_number(container: dict) -> int:
    return int(container["Config"]["Labels"]["com.docker.compose.container-number"])
