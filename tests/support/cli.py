"""Running the installed `order-engine` command as an operator would: a real process, its exit code, its
stdout and stderr, against a real engine."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import orjson

from tests.support.processes import ROOT

#: The console script `make install` puts beside the interpreter (pyproject's [project.scripts]).
ORDER_ENGINE = Path(sys.executable).with_name("order-engine")


def cli_env(api_url: str | None = None, **env: str) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if key not in ("API_URL", "ORDER_ENGINE_API_KEY")}
    return {**base, **({"API_URL": api_url} if api_url else {}), "COLUMNS": "200", **env}


@dataclass
class CliRun:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return orjson.loads(self.stdout)

    def json_lines(self) -> list[dict]:
        return [orjson.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def __str__(self) -> str:
        return f"order-engine {' '.join(self.args)} → {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def run_cli(*args: str, env: dict[str, str], timeout: float = 90) -> CliRun:
    result = subprocess.run(
        [str(ORDER_ENGINE), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    return CliRun(args, result.returncode, result.stdout, result.stderr)


async def order_engine(*args: str, env: dict[str, str], timeout: float = 90) -> CliRun:
    """`run_cli` off the event loop, so several commands can run at once (asyncio.gather)."""
    return await asyncio.to_thread(run_cli, *args, env=env, timeout=timeout)


def start_cli(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """A long-running command (watch, up) in the background; read it with `finish`."""
    return subprocess.Popen(
        [str(ORDER_ENGINE), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def finish(process: subprocess.Popen, args: tuple[str, ...] = (), timeout: float = 60) -> CliRun:
    """Wait for the command to end (killed after `timeout`) and read the rest of its output. Reads through the
    pipes' own buffers, so lines a test already took with `readline` are not read twice, and none is lost."""

    def wait() -> CliRun:
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        try:
            stdout, stderr = process.stdout.read(), process.stderr.read()
            process.wait()
        finally:
            killer.cancel()
        return CliRun(args, process.returncode, stdout, stderr)

    return await asyncio.to_thread(wait)
