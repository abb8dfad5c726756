"""How fast this machine is and how busy it was: the context every CPU figure needs to be compared.

The same engine measures 2–3× apart on two virtual machines of "the same" size (one core of one is just
slower, or shared with a noisy neighbour). A benchmark therefore prints, beside its figures:

* a **calibration**: the CPU time one fixed pure-Python workload takes here, taken before the run on an
  idle engine (lower is faster; figures from runs with calibrations far apart are not comparable);
* the machine's **busy** and **steal** shares during the run, from /proc/stat: steal is time the
  hypervisor gave our virtual CPUs to someone else; busy time not spent by the engine, its servers and
  the client is other load on the box.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

#: Iterations of the calibration loop: ~0.3 s of CPU on a typical 2020s server core.
CALIBRATION_LOOPS = 3_000_000


def calibration_ms(repeats: int = 3) -> float:
    """CPU ms for CALIBRATION_LOOPS additions in a Python loop: the best of `repeats` (the least disturbed)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        total = 0
        for i in range(CALIBRATION_LOOPS):
            total += i
        best = min(best, time.process_time() - started)
    return best * 1000


@dataclass(frozen=True)
class CpuTimes:
    """Jiffies of all CPUs from the first line of /proc/stat."""

    busy: int
    steal: int
    total: int

    @classmethod
    def read(cls) -> CpuTimes | None:
        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        busy = user + nice + system + irq + softirq
        return cls(busy=busy, steal=steal, total=busy + idle + iowait + steal)


def usage_between(before: CpuTimes | None, after: CpuTimes | None) -> dict[str, float]:
    """Busy and steal as % of all CPUs' time between two readings, and the busy CPU-seconds."""
    if before is None or after is None or after.total <= before.total:
        return {}
    total = after.total - before.total
    return {
        "cpus": os.cpu_count() or 1,
        "busy_pct": 100 * (after.busy - before.busy) / total,
        "steal_pct": 100 * (after.steal - before.steal) / total,
        "busy_cpu_s": (after.busy - before.busy) / os.sysconf("SC_CLK_TCK"),
    }
