"""`make run`'s embedded servers, each started privately here: Redis wants a password nobody else can read,
never evicts, and both come back in place after a `kill -9` (what the runner's watchdog calls)."""

from __future__ import annotations

import os
import signal
import stat
import time

import pytest
import redis
import sqlalchemy as sa

from deploy.local import local_redis_url
from deploy.local.embedded_postgres import EmbeddedPostgres
from deploy.local.embedded_redis import EmbeddedRedis
from shared.persistence.batch import make_engine


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_embedded_redis_wants_a_private_password_that_it_keeps_and_tells_local_cli_commands(tmp_path):
    with EmbeddedRedis(tmp_path) as server:
        first_url, port = server.url, server.port
        password = (tmp_path / "redis" / "password").read_text().strip()
        assert first_url == f"redis://:{password}@127.0.0.1:{port}/0" and len(password) >= 32
        with pytest.raises(redis.RedisError, match="(?i)auth"):
            redis.Redis(host="127.0.0.1", port=port).ping()
        assert redis.Redis.from_url(first_url).ping()
        for name in ("password", "redis.conf", "redis.url"):  # each holds the password
            assert mode(tmp_path / "redis" / name) == 0o600, name
        assert local_redis_url({"DATA_DIR": str(tmp_path)}) == first_url
    assert local_redis_url({"DATA_DIR": str(tmp_path)}) is None, "a stopped engine's URL is withdrawn"
    with EmbeddedRedis(tmp_path) as again:
        assert again.url.startswith(f"redis://:{password}@"), "the same password on every start"


def test_embedded_redis_persists_every_write_and_never_evicts_at_its_maxmemory(tmp_path):
    with EmbeddedRedis(tmp_path, maxmemory="3mb") as server:
        client = redis.Redis.from_url(server.url)
        config = client.config_get("*")
        assert config["appendonly"] == "yes" and config["appendfsync"] == "everysec"
        assert config["maxmemory-policy"] == "noeviction" and int(config["maxmemory"]) == 3 * 1024 * 1024
        written = 0
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for written in range(100_000):  # noqa: B007 - how many made it is checked below
                client.set(f"order:{written}", "x" * 1000)
        assert client.dbsize() == written, "a full Redis refuses the new write and keeps every old one"
        assert client.info("stats")["evicted_keys"] == 0


def test_a_killed_embedded_redis_comes_back_on_its_port_with_its_data(tmp_path):
    with EmbeddedRedis(tmp_path) as server:
        url, old_pid = server.url, server.pid
        redis.Redis.from_url(url).set("accepted", "1")
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while server.alive():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert server.death() == f"pid {old_pid} killed by SIGKILL"
        server.recover()
        assert server.alive() and server.pid != old_pid and server.url == url
        client = redis.Redis.from_url(url)  # the URL every service already had
        assert client.get("accepted") == b"1" and client.info("server")["process_id"] == server.pid


def test_an_embedded_redis_whose_data_dir_was_deleted_comes_back_and_says_what_was_lost(tmp_path):
    # Before: its config could not be written into a directory that was gone, so every restart failed
    # ("No such file or directory: .../redis.conf", back-off to 30 s, for ever) and the engine stayed 503.
    with EmbeddedRedis(tmp_path) as server:
        url, old_pid = server.url, server.pid
        redis.Redis.from_url(url).set("accepted", "1")
        (tmp_path / "moved").mkdir()
        (tmp_path / "redis").rename(tmp_path / "moved" / "redis")  # `rm -rf .data/redis`, as far as Redis knows
        os.kill(old_pid, signal.SIGKILL)
        while server.alive():
            time.sleep(0.01)
        note = server.recover()
        assert server.alive() and server.url == url  # the password every service already has
        assert "appendonly.aof" in note and "EMPTY" in note  # the data went with the directory: said so
        client = redis.Redis.from_url(url)
        assert client.get("accepted") is None and client.set("after", "1")
        assert local_redis_url({"DATA_DIR": str(tmp_path)}) == url  # CLI commands find it again
        assert mode(tmp_path / "redis" / "password") == 0o600
        with pytest.raises(RuntimeError, match="in use"):  # and the directory is still the runner's alone
            EmbeddedRedis(tmp_path).start()

        os.kill(server.pid, signal.SIGKILL)  # a whole data dir, this time: nothing to put back, nothing to say
        while server.alive():
            time.sleep(0.01)
        assert server.recover() is None
        assert redis.Redis.from_url(url).get("after") == b"1"


def test_a_killed_embedded_postgres_comes_back_on_its_socket_with_its_data(tmp_path):
    with EmbeddedPostgres(tmp_path) as server:
        url, old_pid = server.url, server.pid
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE accepted (id int)"))
                conn.execute(sa.text("INSERT INTO accepted VALUES (1)"))
            os.kill(old_pid, signal.SIGKILL)  # the postmaster: its backends are orphaned, its lock files left
            deadline = time.monotonic() + 5
            while server.alive():
                assert time.monotonic() < deadline
                time.sleep(0.01)
            server.recover()
            assert server.alive() and server.pid != old_pid and server.url == url
            engine.dispose()  # connections to the dead server
            with engine.begin() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM accepted")).scalar() == 1
        finally:
            engine.dispose()


def test_an_embedded_postgres_whose_data_dir_is_gone_says_so_and_comes_back_when_it_is_back(tmp_path):
    # Before: "restart failed: " and nothing else (pgserver's bare AssertionError), every 30 s, for ever.
    with EmbeddedPostgres(tmp_path) as server:
        url, old_pid = server.url, server.pid
        os.kill(old_pid, signal.SIGKILL)
        while server.alive():
            time.sleep(0.01)
        (tmp_path / "postgres").rename(tmp_path / "elsewhere")
        with pytest.raises(RuntimeError, match=r"data dir .*postgres is gone .*Stop the engine \(Ctrl-C\)"):
            server.recover()
        assert not (tmp_path / "postgres").exists()  # no empty cluster made in its place, without the tables
        (tmp_path / "elsewhere").rename(tmp_path / "postgres")  # put back: the next attempt uses it
        server.recover()
        assert server.alive() and server.url == url
