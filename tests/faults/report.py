"""The fault run's numbers: printed at the end of the pytest run and written as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.faults.invariants import Verdict
from tests.faults.load import LoadDriver

ROOT = Path(__file__).resolve().parents[2]
#: The last report of this process, for the terminal summary.
LAST: dict[str, Any] | None = None


def build(
    load: LoadDriver, verdict: Verdict, faults: dict[str, int], *, dead_services: list[str], **timings: float
) -> dict[str, Any]:
    counts = verdict.counts()
    accepted = load.accepted_by_type()
    return {
        "orders": {
            "submitted": load.stats.submissions,
            "accepted": sum(accepted.values()),
            "acceptedByType": accepted,
            "foundWithoutAcknowledgement": verdict.unacknowledged_found,
            "rejected": dict(load.stats.rejected),
            "gaveUp": load.stats.gave_up,
            "requests": load.stats.tries,
            "retriesAfterNoAnswer": load.stats.retries_after_no_answer,
            "retriesAfter5xx": load.stats.retries_after_5xx,
        },
        "byStatus": verdict.by_status,
        "faultsInjected": dict(sorted(faults.items())),
        "faultsTotal": sum(faults.values()),
        "lost": counts["lost"],
        "duplicated": counts["duplicated"],
        "executionMismatches": counts["execution_mismatch"],
        "stuck": counts["stuck"],
        "gaps": counts["gap"],
        "mismatches": counts["mismatch"],
        "deadServices": dead_services,
        "violationExamples": [f"{v.kind} {v.order_id}: {v.detail}" for v in verdict.violations[:30]],
        "seconds": {name: round(value, 1) for name, value in timings.items()},
    }


def save(data: dict[str, Any], *paths: Path) -> None:
    global LAST
    LAST = data
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def render(data: dict[str, Any]) -> list[str]:
    orders = data["orders"]
    return [
        f"orders accepted: {orders['accepted']} {orders['acceptedByType']} of {orders['submitted']} submitted "
        f"({orders['foundWithoutAcknowledgement']} more found that no client saw accepted; "
        f"rejected {orders['rejected']}, gave up {orders['gaveUp']}, "
        f"{orders['retriesAfterNoAnswer']} retries after no answer, {orders['retriesAfter5xx']} after 5xx)",
        f"final status: {data['byStatus']}",
        f"faults injected: {data['faultsTotal']} {data['faultsInjected']}, hitting "
        f"{data.get('ordersExecutingWhenFaultsHit', '?')} orders mid-execution in all",
        f"lost {data['lost']}, duplicated {data['duplicated']}, execution mismatches {data['executionMismatches']}, "
        f"stuck {data['stuck']}, gaps {data['gaps']}, PostgreSQL mismatches {data['mismatches']}, "
        f"services dead on their own {data['deadServices']}",
        f"seconds: {data['seconds']}",
        *data["violationExamples"][:10],
    ]
