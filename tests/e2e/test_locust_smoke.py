"""The market locust scenario runs headless against the real services and its report shows confirmed orders.

A smoke test of the load-test tooling (`make load`), not a measurement: a few users for a few seconds.
"""

import csv
import os
import subprocess
import sys

from tests.support.processes import ROOT


def test_the_market_scenario_reports_confirmed_orders_and_no_failures(engine, tmp_path):
    report = tmp_path / "market"
    command = [
        *(sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests/locustfiles/market.py")),
        *("--headless", "--only-summary", "--users", "4", "--spawn-rate", "4", "--run-time", "5s"),
        *("--stop-timeout", "10", "--host", engine.api_url, "--csv", str(report)),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOAD_THINK_MIN_S": "0.1", "LOAD_THINK_MAX_S": "0.3"}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    with open(f"{report}_stats.csv", newline="") as stats_file:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(stats_file)}
    confirmed = rows[("ORDER", "market submit→confirmed")]
    submitted = rows[("POST", "market submit")]
    assert int(confirmed["Request Count"]) > 0 and int(submitted["Request Count"]) > 0
    assert all(row["Failure Count"] == "0" for row in rows.values()), rows
