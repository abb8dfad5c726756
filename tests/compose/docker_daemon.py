"""A Docker engine for the compose test: the one that answers already, else a private daemon of our own.

The private daemon (Debian's docker.io, installed with apt when `dockerd` is missing) listens on its own
socket, keeps its runtime state in a temporary folder and its images in a data-root under the cache folder,
so it never touches a Docker the machine runs for something else. Stopping it removes the socket and the
runtime folder; the data-root stays as this machine's image cache (base images, build layers) and holds
nothing else once the test has taken its stack down. `make compose-clean` deletes it.

A run killed before it could stop its daemon leaves a pid file in the cache folder: the next run stops that
daemon first. One run at a time uses the cache (a lock file), since two daemons must never share a data-root.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: Where images and build layers are kept between runs on one machine (never committed, never shared).
CACHE_DIR = Path(os.environ.get("ORDER_ENGINE_CACHE") or Path.home() / ".cache" / "order-engine") / "compose-test"
#: A fresh daemon answered within ~3 s here; a loaded machine gets more.
DAEMON_START_TIMEOUT_S = 60.0
#: Containers still running get this long from the daemon's own shutdown before we SIGKILL it.
DAEMON_STOP_TIMEOUT_S = 30.0
#: Debian's packages that give a Docker engine (dockerd, containerd, runc, docker-init, docker-proxy).
ENGINE_PACKAGES = ("docker.io",)


@dataclass(frozen=True)
class DockerEngine:
    """How to reach an engine: the environment a `docker` or `docker-compose` command needs."""

    host: str  # a DOCKER_HOST value
    private: bool  # started by this test (and stopped by it)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}


def answers(host: str | None, timeout: float = 10.0) -> bool:
    """Whether a Docker engine answers at `host` (None: the client's default, DOCKER_HOST or its socket)."""
    env = dict(os.environ)
    if host is not None:
        env["DOCKER_HOST"] = host
    try:
        run = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0 and bool(run.stdout.strip())


def apt_install(*packages: str) -> None:
    """Install Debian packages (with sudo unless root); refresh the package lists only if that is needed."""
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    command = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    print(f"[compose-test] installing {' '.join(packages)} with apt", flush=True)
    if subprocess.run([*command, "install", "-y", "--no-install-recommends", *packages]).returncode == 0:
        return
    subprocess.run([*command, "update"], check=True)
    subprocess.run([*command, "install", "-y", "--no-install-recommends", *packages], check=True)


class PrivateDaemon:
    """`dockerd` on its own socket; `start()` then `stop()` (also from a finalizer after Ctrl-C)."""

    def __init__(self, cache_dir: Path = CACHE_DIR) -> None:
        self.cache_dir = cache_dir
        self.data_root = cache_dir / "docker-data"
        self.pid_record = cache_dir / "dockerd.pid"
        self._lock_file = cache_dir / "lock"
        self._lock: int | None = None
        self.run_dir: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "docker.sock"

    @property
    def log_path(self) -> Path:
        return self.cache_dir / "dockerd.log"

    @property
    def engine(self) -> DockerEngine:
        return DockerEngine(f"unix://{self.socket}", private=True)

    def start(self) -> DockerEngine:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self._stop_leftover()
        if shutil.which("dockerd") is None:
            apt_install(*ENGINE_PACKAGES)
        # A short path: a unix socket's path must fit in 108 bytes.
        self.run_dir = Path(tempfile.mkdtemp(prefix="oe-dockerd-", dir="/tmp"))
        command = [
            "dockerd",
            # No iptables rules and no default bridge: nothing of the host's networking is changed. Compose's
            # own network is a user-defined bridge, and ports are published through docker-proxy.
            *("--iptables=false", "--ip6tables=false", "--bridge=none"),
            *("--data-root", str(self.data_root), "--exec-root", str(self.run_dir / "exec")),
            *("--pidfile", str(self.run_dir / "dockerd.pid"), "-H", f"unix://{self.socket}"),
        ]
        if os.geteuid() != 0:  # dockerd runs as root; its socket is then root's too
            command = ["sudo", *command]
        with open(self.log_path, "ab") as log:
            # Its own session: a Ctrl-C in the terminal reaches pytest, which takes the stack down first.
            self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        self.pid_record.write_text(f"{self.process.pid}\n{self.run_dir}\n")
        deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
        while not answers(self.engine.host, timeout=5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"the private Docker daemon did not start; the end of its log:\n{tail}")
            time.sleep(0.2)
        return self.engine

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process.pid, lambda: self.process.poll() is not None)
            self.process = None
        if self.run_dir is not None:
            _remove_run_dir(self.run_dir)
            self.run_dir = None
        self.pid_record.unlink(missing_ok=True)
        self._release_lock()

    # --- one run at a time, and what a killed run left -------------------------------------------------
    def _take_lock(self) -> None:
        self._lock = os.open(self._lock_file, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            self._lock = None
            raise RuntimeError(f"another compose test is using {self.cache_dir}; wait for it to end") from None

    def _release_lock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing releases the flock
            self._lock = None

    def _stop_leftover(self) -> None:
        """Stop the daemon of a run that was killed before it could (its pid and runtime folder are recorded)."""
        if not self.pid_record.exists():
            return
        pid_text, _, run_dir = self.pid_record.read_text().partition("\n")
        with contextlib.suppress(ValueError):
            pid = int(pid_text)
            if _is_our_dockerd(pid, self.data_root):
                print(f"[compose-test] stopping the private Docker daemon a killed run left (pid {pid})", flush=True)
                _terminate(pid, lambda: not _alive(pid))
        if run_dir.strip():
            _remove_run_dir(Path(run_dir.strip()))
        self.pid_record.unlink(missing_ok=True)


def _remove_run_dir(run_dir: Path) -> None:
    """Delete the daemon's runtime folder, unmounting first what it left mounted there (dockerd can leave the
    bind mount of a network namespace behind, and a mount point cannot be deleted)."""
    prefix = str(run_dir) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    for point in sorted(points, key=len, reverse=True):  # the deepest first
        subprocess.run([*sudo, "umount", "--lazy", point], check=False, capture_output=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    if run_dir.exists():
        print(f"[compose-test] could not delete {run_dir} entirely", flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return Path(f"/proc/{pid}").exists() and "zombie" not in _status(pid)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return ""


def _is_our_dockerd(pid: int, data_root: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arg.endswith(b"dockerd") for arg in argv) and str(data_root).encode() in argv


def _terminate(pid: int, gone, timeout: float = DAEMON_STOP_TIMEOUT_S) -> None:
    """SIGTERM (dockerd stops its containers and containerd), then SIGKILL if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not gone():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while not gone() and time.monotonic() < deadline + 10:
            time.sleep(0.1)


def find_or_start_engine(daemon: PrivateDaemon) -> DockerEngine:
    """The engine that answers already (DOCKER_HOST, or the default socket), else `daemon`, started."""
    if shutil.which("docker") is None:
        apt_install(*ENGINE_PACKAGES)  # the client comes with the engine
    elif answers(None):
        return DockerEngine(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), private=False)
    return daemon.start()
