"""What the provisioned Grafana dashboard and the Prometheus config refer to, for tests that keep them honest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "order-engine.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE = ROOT / "compose.yaml"

#: Series names in PromQL: ours (engine_*), the process collector's (process_*) and Prometheus's own `up`.
_SERIES = re.compile(r"\b(engine_[a-z0-9_]+|process_[a-z0-9_]+|up)\b(?=\s*[{\[)]|\s*$)")
#: What a histogram or counter sample adds to its family's name.
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p.get("type") != "row"]


def expressions(dashboard: dict) -> list[str]:
    return [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]


def family(name: str) -> str:
    """`engine_order_stage_seconds_bucket` → `engine_order_stage_seconds`; `…_total` → its counter family."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def series_in(expr: str) -> set[str]:
    return set(_SERIES.findall(expr))


def dashboard_families() -> set[str]:
    """Every metric family the dashboard's expressions read (Prometheus's `up` aside)."""
    names = {name for expr in expressions(load_dashboard()) for name in series_in(expr)}
    return {family(name) for name in names if name != "up"}


def prometheus_jobs() -> dict[str, tuple[str, int]]:
    """job name → (the compose service it discovers, its port), for the engine's jobs."""
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            [name] = sd["names"]
            jobs[job["job_name"]] = (name, sd["port"])
    return jobs


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())
