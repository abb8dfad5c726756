"""The locust scenarios run headless against the real services and their reports show what each promises.

A smoke test of the load-test tooling (`make load`), not a measurement: a few users for a few seconds.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT


def run_scenario(engine, tmp_path: Path, scenario: str, **env: str) -> dict[tuple[str, str], dict[str, str]]:
    """Run loadtests/locustfiles/<scenario>.py for 5 s with 4 users; its stats rows by (Type, Name)."""
    report = tmp_path / scenario
    command = [
        *(sys.executable, "-m", "locust", "-f", str(ROOT / f"loadtests/locustfiles/{scenario}.py")),
        *("--headless", "--only-summary", "--users", "4", "--spawn-rate", "4", "--run-time", "5s"),
        *("--stop-timeout", "10", "--host", engine.api_url, "--csv", str(report)),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOAD_THINK_MIN_S": "0.1", "LOAD_THINK_MAX_S": "0.3", **env}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with open(f"{report}_stats.csv", newline="") as stats_file:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(stats_file)}


def test_the_market_scenario_reports_confirmed_orders_and_no_failures(engine, tmp_path):
    rows = run_scenario(engine, tmp_path, "market")
    confirmed = rows[("ORDER", "market submit→confirmed")]
    submitted = rows[("POST", "market submit")]
    assert int(confirmed["Request Count"]) > 0 and int(submitted["Request Count"]) > 0
    assert all(row["Failure Count"] == "0" for row in rows.values()), rows


def test_the_conditional_scenario_places_every_type_and_fires_stops_as_priced(engine, tmp_path):
    rows = run_scenario(
        engine,
        tmp_path,
        "conditional",
        # Six orders a user, the types alike, so each shows up; stops priced above BEST, so they fire at once;
        # short lives, so every order ends within the run's grace period.
        COND_ORDERS_PER_USER="6",
        COND_STOP_WEIGHT="1",
        COND_TRAILING_WEIGHT="1",
        COND_OCO_WEIGHT="1",
        COND_STOP_OFFSET_MIN_BPS="-50",
        COND_STOP_OFFSET_MAX_BPS="-20",
        COND_EXPIRY_MIN_S="1",
        COND_EXPIRY_MAX_S="3",
        COND_CANCEL_AFTER_MIN_S="0.2",
        COND_CANCEL_AFTER_MAX_S="0.8",
    )
    for order_type in ("stop", "trailing_stop", "oco"):
        assert int(rows[("POST", f"{order_type} submit")]["Request Count"]) > 0, order_type
    assert int(rows[("OUTCOME", "stop fired by stop")]["Request Count"]) > 0, rows.keys()
    assert ("ORDER", "stop triggered→confirmed") in rows
    assert all(row["Failure Count"] == "0" for row in rows.values()), rows
