"""`make run`'s command line: which processes it starts."""

import pytest

from deploy.local.__main__ import parse_replicas, service_commands, with_replicas


def test_replicas_run_several_processes_of_a_worker_under_numbered_names():
    names = list(with_replicas(service_commands(None), parse_replicas("execution-worker=2, db-sync=3")))
    assert names == [
        "api", "quote-stream", "execution-worker.1", "execution-worker.2",
        "db-sync.1", "db-sync.2", "db-sync.3", "limit-worker", "sniper-worker",
    ]  # fmt: skip


def test_replicas_of_a_subset_and_one_replica_keep_plain_names():
    commands = with_replicas(service_commands("api,execution-worker"), parse_replicas("execution-worker=1"))
    assert list(commands) == ["api", "execution-worker"]


@pytest.mark.parametrize("spec", ["execution-worker=0", "execution-worker", "execution-worker=two", "api=2"])
def test_bad_replica_counts_are_refused(spec):
    with pytest.raises(SystemExit):
        parse_replicas(spec)


def test_replicas_of_an_unknown_or_unselected_service_are_refused():
    with pytest.raises(SystemExit, match="unknown"):
        with_replicas(service_commands("api"), parse_replicas("db-sync=2"))


def test_every_worker_replica_gets_its_own_metrics_port_and_the_api_none():
    from deploy.local.__main__ import metrics_ports

    names = with_replicas(service_commands(None), parse_replicas("execution-worker=3"))
    ports = metrics_ports(list(names))
    assert ports == {
        "quote-stream": 9101,
        "execution-worker.1": 9102,
        "execution-worker.2": 9112,
        "execution-worker.3": 9122,
        "db-sync": 9103,
        "limit-worker": 9104,
        "sniper-worker": 9105,
    }


def test_the_runner_prints_where_each_services_metrics_and_health_are():
    from deploy.local.__main__ import probe_lines

    lines = probe_lines(["api", "db-sync.1"], {"db-sync.1": 9103}, {"API_PORT": "8123", "METRICS_HOST": "0.0.0.0"})
    assert lines == [
        "api        http://127.0.0.1:8123/metrics  http://127.0.0.1:8123/health",
        "db-sync.1  http://127.0.0.1:9103/metrics  http://127.0.0.1:9103/health",
    ]


class FlakyServer:
    """Stands in for an embedded server: dies when told to; its first `failures` restarts fail."""

    where = "port 6390"

    def __init__(self, failures: int, note: str | None = None) -> None:
        self.pid, self.up, self.failures, self.note = 100, True, failures, note

    def alive(self) -> bool:
        return self.up

    def death(self) -> str:
        return f"pid {self.pid} killed by SIGKILL"

    def recover(self) -> str | None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("port 6390 is taken")
        self.pid, self.up = self.pid + 1, True
        return self.note


async def test_a_dead_embedded_server_is_restarted_in_place_with_back_off_until_it_comes_back(monkeypatch):
    import asyncio
    import io

    from deploy.local import watchdog
    from deploy.local.supervisor import Output

    monkeypatch.setattr(watchdog, "POLL_S", 0.01)
    monkeypatch.setattr(watchdog, "RESTART_MIN_S", 0.01)
    server, stopping, out = FlakyServer(failures=2), asyncio.Event(), io.StringIO()
    watching = asyncio.create_task(watchdog.watch({"redis": server}, stopping, Output(["redis"], stream=out)))
    await asyncio.sleep(0.05)
    assert out.getvalue() == "", "a live server is left alone"
    server.up = False
    for _ in range(200):
        if server.pid == 101:
            break
        await asyncio.sleep(0.01)
    stopping.set()
    await asyncio.wait_for(watching, 5)
    *attempts, restarted = out.getvalue().splitlines()
    assert attempts == [
        "redis | pid 100 killed by SIGKILL; restarting in 0.01 s on the same port 6390",
        "redis | restart failed: port 6390 is taken",
        "redis | pid 100 killed by SIGKILL; restarting in 0.02 s on the same port 6390",
        "redis | restart failed: port 6390 is taken",
        "redis | pid 100 killed by SIGKILL; restarting in 0.04 s on the same port 6390",
    ]
    assert restarted.startswith("redis | restarted: pid 101 on the same port 6390, ")


async def test_what_a_restart_had_to_put_back_is_told_after_restarted(monkeypatch):
    import asyncio
    import io

    from deploy.local import watchdog
    from deploy.local.supervisor import Output

    monkeypatch.setattr(watchdog, "POLL_S", 0.01)
    note = "the directory, appendonly.aof had been deleted from /d/redis: put back; it starts EMPTY"
    server, stopping, out = FlakyServer(failures=0, note=note), asyncio.Event(), io.StringIO()
    watching = asyncio.create_task(watchdog.watch({"redis": server}, stopping, Output(["redis"], stream=out)))
    server.up = False
    for _ in range(200):
        if server.pid == 101:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.02)
    stopping.set()
    await asyncio.wait_for(watching, 5)
    assert out.getvalue().splitlines()[-1] == f"redis | {note}"


async def test_a_restart_that_fails_without_a_message_still_says_why(monkeypatch):
    import asyncio
    import io

    from deploy.local import watchdog
    from deploy.local.supervisor import Output

    class Mute(FlakyServer):
        def recover(self) -> None:
            raise AssertionError  # what pgserver raises when its data dir is gone

    monkeypatch.setattr(watchdog, "POLL_S", 0.01)
    server, stopping, out = Mute(failures=0), asyncio.Event(), io.StringIO()
    watching = asyncio.create_task(watchdog.watch({"postgres": server}, stopping, Output(["postgres"], stream=out)))
    server.up = False
    for _ in range(300):
        if "restart failed" in out.getvalue():
            break
        await asyncio.sleep(0.01)
    stopping.set()
    await asyncio.wait_for(watching, 5)
    assert "postgres | restart failed: AssertionError()" in out.getvalue().splitlines()


def test_servers_given_by_url_are_not_started_hence_not_watched(tmp_path):
    from deploy.local.embedded import resolve_servers

    given = {"REDIS_URL": "redis://elsewhere:6379/0", "DATABASE_URL": "postgresql://u@elsewhere/db"}
    with resolve_servers(tmp_path, given) as servers:
        assert servers == ("redis://elsewhere:6379/0", "postgresql://u@elsewhere/db", {})
    assert not any(tmp_path.iterdir())


def test_cli_commands_find_the_redis_of_a_local_engine_on_their_data_dir(tmp_path):
    from deploy.local import local_redis_url

    env = {"DATA_DIR": str(tmp_path)}
    assert local_redis_url(env) is None  # no engine runs there
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "redis.url").write_text("redis://:secret@127.0.0.1:41234/0\n")
    assert local_redis_url(env) == "redis://:secret@127.0.0.1:41234/0"
