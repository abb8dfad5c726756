"""What the failover tests share: a fault as the client saw it, and how each run is reported and judged.

A failover test (Sentinel: test_failover.py; Redis Cluster: test_cluster_failover.py) drives the fault suite's
load through one or more faults, settles, and then `conclude`s: the report goes to reports/<name>.json (and
the run's log folder) and the terminal, and the run must have lost nothing, accepted enough in each phase,
and been unavailable for less than its limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.faults import report
from tests.faults.invariants import Verdict
from tests.faults.load import LoadDriver, Submission

#: Orders accepted in each phase, at least: less would make "nothing lost" vacuous.
MIN_ACCEPTED_PER_PHASE = 10
#: Generous: a failover takes a few seconds here; this only catches a hang.
WINDOW_LIMIT_S = 20.0


@dataclass
class Fault:
    name: str
    at: float  # time.monotonic() when it hit
    until: float  # the next fault, or the end of the load: what the window is looked for in
    notes: dict[str, Any]


def unavailability(submissions: list[Submission], fault: Fault) -> dict[str, Any]:
    """What a client saw of `fault`: the longest stretch without a 200 (from the last 200 before the fault to
    the end of its phase), when the first 200 after it came, and the slowest submission in its phase."""
    oks = sorted(answered for s in submissions for _, answered, status in s.answers if status == 200)
    before = [t for t in oks if t <= fault.at]
    after = [t for t in oks if fault.at < t <= fault.until]
    window, window_from = 0.0, fault.at
    points = before[-1:] + after
    for earlier, later in zip(points, points[1:], strict=False):
        if later - earlier > window:
            window, window_from = later - earlier, earlier
    # Each submission answered after the fault and sent before the next one: first try to final answer.
    latencies = [
        (s.answered_at - s.sent_at, s)
        for s in submissions
        if s.sent_at is not None and s.answered_at is not None and s.answered_at > fault.at and s.sent_at < fault.until
    ]
    slowest_s, slowest = max(latencies, key=lambda pair: pair[0], default=(None, None))
    statuses: dict[str, int] = {}
    for s in submissions:
        for sent, _, status in s.answers:
            if fault.at <= sent < fault.until and status != 200:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "noAcceptanceWindowS": round(window, 3),
        "windowStartsAfterFaultS": round(window_from - fault.at, 3),
        "firstAcceptanceAfterFaultS": round(after[0] - fault.at, 3) if after else None,
        "slowestSubmissionS": None if slowest_s is None else round(slowest_s, 3),
        "slowestSubmission": None
        if slowest is None
        else {"kind": slowest.kind, "tries": slowest.tries, "outcome": slowest.outcome, "id": slowest.order_id},
        "answersOtherThan200": statuses,  # "None": no answer (refused, reset, timed out)
        **fault.notes,
    }


def now_text() -> str:
    """Wall-clock time, as the services' log lines print it: to find a fault in their logs."""
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def accepted_in(load: LoadDriver, start: float, end: float) -> set[str]:
    return {
        s.order_id
        for s in load.submissions
        if s.outcome == "accepted" and s.order_id and s.sent_at is not None and start <= s.sent_at < end
    }


def conclude(name: str, data: dict[str, Any], verdict: Verdict, dead: list[str], log_dir: Path, engine: Any,
             phases: dict[str, set[str]], extra_lines: list[str]) -> None:  # fmt: skip
    """Save, print and judge one failover run (`data` as `report.build` made it, plus the test's own fields)."""
    data["logs"] = str(log_dir)
    # Not report.save: that would replace the main fault run's report in the terminal summary.
    for path in (report.ROOT / "reports" / f"{name}.json", Path(log_dir) / f"{name}.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    lines = report.render(data) + [
        *extra_lines,
        *(f"UNAVAILABILITY ({fault}): {json.dumps(w)}" for fault, w in data["unavailability"].items()),
    ]
    print("\n" + "\n".join(lines))
    if not verdict.ok or dead:
        print(engine.logs()[-12000:])

    assert not dead, f"services exited on their own: {dead}"
    for phase, ids in phases.items():
        assert len(ids) >= MIN_ACCEPTED_PER_PHASE, f"only {len(ids)} orders accepted in phase {phase!r}"
    assert verdict.ok, f"{verdict.counts()}: {data['violationExamples'][:10]}"
    for fault, window in data["unavailability"].items():
        assert window["noAcceptanceWindowS"] < WINDOW_LIMIT_S, f"{fault}: {window}"
