"""Evaluate every query of the Grafana board against a live Prometheus: do they parse, and which return data?

    python deploy/grafana/check_queries.py --prometheus http://127.0.0.1:9090

Run it after some load (e.g. `loadtests/bench.py --rate 30 --duration 40`): a query that fails is a broken
panel; an empty one only means nothing of that kind happened yet (no refusals, no sniper orders, ...).
Exit status 1 if any query fails. Grafana's own variables are given fixed values: `$__rate_interval` = 30s,
`$type` = every order type.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

BOARD = Path(__file__).parent / "dashboards" / "order-engine.json"
VARIABLES = {"$__rate_interval": "30s", "$type": ".*"}


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            found.append((panel["title"], expr))
    return found


def evaluate(prometheus: str, expr: str) -> tuple[str, int]:
    url = f"{prometheus.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
    except Exception as exc:  # a 400 for a query that does not parse lands here too
        return f"error: {exc}", 0
    return answer["status"], len(answer["data"]["result"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    args = parser.parse_args()
    failed = 0
    found = queries(json.loads(BOARD.read_text()))
    for title, expr in found:
        status, series = evaluate(args.prometheus, expr)
        if status != "success":
            failed += 1
        if status != "success" or not series:
            print(f"{'FAILED' if status != 'success' else 'empty '}  {title}: {expr}  ({status})")
    print(f"{len(found)} queries: {len(found) - failed} evaluated, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
