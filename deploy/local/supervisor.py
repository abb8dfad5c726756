"""Run services as child processes, the way `docker compose up` does on one terminal.

- Each child's stdout+stderr lines are printed as `name | line` (fixed-width name, coloured on a terminal).
- A child that exits while we are not stopping is restarted (compose's `restart: unless-stopped`) after a
  back-off of 1 s doubling to 30 s, reset to 1 s once it had stayed up 60 s; the others keep running.
- Stopping (first SIGINT/SIGTERM): SIGTERM to each child's process group, SIGKILL after 10 s. A second signal
  SIGKILLs at once. Each child leads its own process group, so a Ctrl-C reaches only the runner, which then
  stops the children itself, and so that whatever a child forked is stopped with it. A child also gets
  SIGTERM if the runner dies without cleaning up (Linux PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from typing import TextIO

RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0
STOP_GRACE_S = 10.0

_COLORS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _child_setup(runner_pid: int) -> None:
    """Runs in the child between fork and exec: die with the runner, even if it is SIGKILLed."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != runner_pid:  # the runner died before prctl took effect
            os._exit(1)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _describe(rc: int) -> str:
    return f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with code {rc}"


class Output:
    """Prints `name | text` lines with the names padded to one width."""

    def __init__(self, names: Iterable[str], stream: TextIO = sys.stdout) -> None:
        names = list(names)
        self.stream = stream
        self.width = max(map(len, names))
        self.colors = {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(names)}
        self.use_color = stream.isatty() and not os.environ.get("NO_COLOR")

    def line(self, name: str, text: str) -> None:
        label = f"{name:<{self.width}} |"
        if self.use_color:
            label = f"\x1b[{self.colors.get(name, '0')}m{label}\x1b[0m"
        try:
            self.stream.write(f"{label} {text}\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # e.g. `make run | tee` and the tee died: keep supervising
            if self.stream is sys.stdout:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (lives until exit)
            self.stream = open(os.devnull, "w")  # noqa: SIM115


class Backoff:
    """Delays between restarts: `minimum`, doubling up to `maximum` while restarts keep failing; back to
    `minimum` once the thing ran `healthy_after` seconds (a crash now and then is not a crash loop)."""

    def __init__(self, minimum: float, maximum: float, healthy_after: float) -> None:
        self.minimum, self.maximum, self.healthy_after = minimum, maximum, healthy_after
        self._next = minimum

    def delay(self, ran_for: float) -> float:
        """The wait before the next start, for something that ran `ran_for` seconds before it ended."""
        if ran_for >= self.healthy_after:
            self._next = self.minimum
        delay = self._next
        self._next = min(delay * 2, self.maximum)
        return delay


#: Signals this close to the first one are the same keypress delivered twice.
SIGNAL_ECHO_S = 1.0


class Supervisor:
    def __init__(self, *, env: Mapping[str, str], cwd: str | os.PathLike[str], out: Output) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.out = out
        self.stopping = asyncio.Event()
        self.running: dict[str, asyncio.subprocess.Process] = {}
        self._stopping_since = 0.0

    def handle_signals(self) -> None:
        """First SIGINT/SIGTERM: stop gracefully. Second: SIGKILL everything now. Call inside the loop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self.stopping.is_set():
            self.out.line("runner", f"{sig.name}: stopping every service (again to kill them now)")
            self.stopping.set()
            self._stopping_since = time.monotonic()
        elif time.monotonic() - self._stopping_since < SIGNAL_ECHO_S:
            # One Ctrl-C reaches us twice: from the terminal and forwarded by `uv run`/make. Not a second press.
            return
        else:
            self.out.line("runner", f"{sig.name} again: killing every service")
            for proc in self.running.values():
                _signal_group(proc.pid, signal.SIGKILL)

    async def run(
        self, services: Mapping[str, Sequence[str]], env_of: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        """Keep every service running until `stopping` is set, then return once all have exited.
        `env_of[name]` adds to (or overrides) the environment of that one service, e.g. its own port."""
        env_of = env_of or {}
        await asyncio.gather(*(self._keep_running(name, argv, env_of.get(name, {})) for name, argv in services.items()))

    async def run_once(self, name: str, argv: Sequence[str]) -> int:
        """Run a one-shot command (like migrations) with prefixed output; return its exit code."""
        return await self._run(name, argv)

    async def _keep_running(self, name: str, argv: Sequence[str], extra_env: Mapping[str, str]) -> None:
        backoff = Backoff(RESTART_MIN_S, RESTART_MAX_S, HEALTHY_AFTER_S)
        while not self.stopping.is_set():
            started = time.monotonic()
            rc = await self._run(name, argv, extra_env)
            if self.stopping.is_set():
                return
            delay = backoff.delay(time.monotonic() - started)
            self.out.line(name, f"{_describe(rc)}; restarting in {delay:g} s")
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

    async def _run(self, name: str, argv: Sequence[str], extra_env: Mapping[str, str] | None = None) -> int:
        runner_pid = os.getpid()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.cwd,
                env={**self.env, **extra_env} if extra_env else self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: _child_setup(runner_pid),
                limit=1 << 20,
            )
        except OSError as exc:
            self.out.line(name, f"cannot start {argv[0]}: {exc}")
            return 127
        self.running[name] = proc
        assert proc.stdout is not None  # stdout=PIPE
        pump = asyncio.create_task(self._pump(name, proc.stdout))
        exited = asyncio.create_task(proc.wait())
        stop = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.shield(exited), STOP_GRACE_S)
                except TimeoutError:
                    self.out.line(name, f"still running {STOP_GRACE_S:g} s after SIGTERM: SIGKILL")
                    _signal_group(proc.pid, signal.SIGKILL)
                    await exited
            if self.stopping.is_set():
                self.out.line(name, _describe(exited.result()))
            return exited.result()
        finally:
            stop.cancel()
            self.running.pop(name, None)
            _signal_group(proc.pid, signal.SIGKILL)  # anything it left behind in its process group
            if not exited.done():  # we were cancelled
                await proc.wait()
            with suppress(TimeoutError):
                await asyncio.wait_for(pump, 2)

    async def _pump(self, name: str, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the 1 MiB limit: its data is dropped
                self.out.line(name, "<line too long, dropped>")
                continue
            if not raw:
                return
            self.out.line(name, raw.decode(errors="replace").rstrip("\r\n"))
