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
