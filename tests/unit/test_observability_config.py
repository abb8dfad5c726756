"""compose.yaml, deploy/prometheus/prometheus.yml, the Grafana provisioning and the dashboard agree with each other
and with the services' ports, so the observability profile cannot silently rot. (That every metric the dashboard
reads is exported by a running engine is checked end to end: tests/e2e/test_metrics_and_health.py.)"""

from __future__ import annotations

import re

import yaml

from deploy.local import SERVICES
from shared.domain.order_types import OrderType
from shared.observability.probes import DEFAULT_METRICS_PORTS
from tests.support.dashboard import (
    ROOT,
    compose,
    dashboard_families,
    expressions,
    load_dashboard,
    panels,
    prometheus_jobs,
    series_in,
)

API_PORT = 8000


def probe_port(service: str) -> int:
    return API_PORT if service == "api" else DEFAULT_METRICS_PORTS[service]


def test_prometheus_scrapes_every_engine_service_by_its_compose_name_and_port():
    services = compose()["services"]
    jobs = prometheus_jobs()
    assert set(jobs) == set(SERVICES)
    for job, (name, port) in jobs.items():
        assert name == job and name in services, f"job {job} discovers {name}, not a compose service"
        assert port == probe_port(name), f"{job} scraped on {port}, serves on {probe_port(name)}"


def test_every_engine_service_has_a_health_check_on_its_own_health_endpoint():
    services = compose()["services"]
    for name in SERVICES:
        test = services[name]["healthcheck"]["test"]
        url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", " ".join(test))
        assert url, f"{name}: no /health URL in {test}"
        assert (int(url.group(1)), url.group(2)) == (probe_port(name), "/health"), name


def test_the_probes_listen_on_all_interfaces_in_containers():
    environment = compose()["x-engine-env"]
    assert environment["METRICS_HOST"] == "0.0.0.0"


def test_prometheus_and_grafana_are_an_optional_profile_with_pinned_images_and_read_only_provisioning():
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        service = services[name]
        assert service["profiles"] == ["observability"]
        image, _, tag = service["image"].partition(":")
        assert image in ("prom/prometheus", "grafana/grafana") and re.fullmatch(r"v?\d+\.\d+\.\d+", tag)
        for mount in service["volumes"]:
            source, target, *mode = mount.split(":")
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts a missing {source}"
                assert mode == ["ro"], f"{name} mounts {source} writable"
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    engine_services = [name for name, s in services.items() if "profiles" not in s]
    assert "prometheus" not in engine_services and "grafana" not in engine_services


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard_folder_compose_mounts():
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    [datasource] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "engine.yml").read_text())["providers"]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    dashboard = load_dashboard()
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_the_dashboard_covers_what_the_issue_asks_for():
    exprs = " ".join(expressions(load_dashboard()))
    for needed in (
        "engine_orders_terminal_total",
        "histogram_quantile(0.99, sum by (le, stage) (rate(engine_order_stage_seconds_bucket",
        "engine_execution_retries_total",
        "engine_dead_letters",
        "engine_execution_queue_depth",
        "engine_quote_age_seconds",
        "engine_websocket_connections",
        "engine_dbsync_lag_seconds",
        "up{",
    ):
        assert needed in exprs, needed
    assert all(series_in(expr) for expr in expressions(load_dashboard())), "an expression reads no known series"


def test_the_conditional_orders_row_shows_resting_orders_triggers_and_tick_cost():
    board = load_dashboard()["panels"]
    rows = [i for i, panel in enumerate(board) if panel["type"] == "row"]
    start = next(i for i in rows if board[i]["title"] == "Conditional orders")
    end = next((i for i in rows if i > start), len(board))
    exprs = " ".join(target["expr"] for panel in board[start + 1 : end] for target in panel["targets"])
    for needed in (
        "sum by (type) (max by (type, pair) (engine_conditional_orders_resting))",
        "sum by (condition) (rate(engine_conditional_triggers_total[$__rate_interval]))",
        "histogram_quantile(0.5, sum by (le) (rate(engine_conditional_tick_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(engine_conditional_tick_seconds_bucket",
    ):
        assert needed in exprs, needed


def test_the_order_type_variable_offers_every_order_type():
    [variable] = [v for v in load_dashboard()["templating"]["list"] if v["name"] == "type"]
    assert variable["query"].split(",") == [order_type.value for order_type in OrderType]
    assert [o["value"] for o in variable["options"]] == ["$__all", *variable["query"].split(",")]


def test_every_metric_the_dashboard_reads_is_documented_in_the_operations_page():
    page = (ROOT / "docs" / "operations.md").read_text()
    section = page.split("## Metrics and health", 1)[1].split("\n## ", 1)[0]
    missing = sorted(name for name in dashboard_families() if name.startswith("engine_") and f"`{name}" not in section)
    assert not missing, f"undocumented in docs/operations.md's Metrics and health: {missing}"


def test_the_dashboards_job_filters_name_exactly_the_prometheus_jobs():
    filters = {m for expr in expressions(load_dashboard()) for m in re.findall(r'job=~"([^"]+)"', expr)}
    assert filters, "the dashboard filters no job"
    for jobs in filters:
        assert set(jobs.split("|")) == set(prometheus_jobs()), jobs
