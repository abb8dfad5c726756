"""When housekeeping sleeps until: the arithmetic of shared/store/doorbell.py and the launch schedule."""

import time

import pytest

from shared.store.doorbell import MAX_WAIT_S, earliest, wait_s
from shared.venues.launches import next_moment_after, schedule
from shared.venues.simulated import SimConfig


@pytest.mark.parametrize(
    ("due_ms", "now_ms", "expected"),
    [
        (None, 1_000, MAX_WAIT_S),  # nothing due: only the heartbeat's cap
        (1_250, 1_000, 0.25),
        (1_000, 1_000, 0.0),
        (500, 1_000, 0.0),  # overdue: go round at once
        (1_000 + 3_600_000, 1_000, MAX_WAIT_S),
    ],
)
def test_the_wait_runs_to_the_next_deadline_within_the_cap(due_ms, now_ms, expected):
    assert wait_s(due_ms, now_ms) == expected


def test_the_earliest_of_known_deadlines():
    assert earliest(None, None) is None
    assert earliest(5, None, 3) == 3


def test_the_next_moment_of_the_launch_schedule_is_the_first_strictly_after():
    sim = SimConfig(seed="s", epoch=time.time(), launch_first_s=30, launch_interval_s=90, liquidity_step_s=10)
    moments = sorted(at for launch in schedule(sim) for _step, at in launch.moments())
    assert next_moment_after(sim, 0) == moments[0]
    assert next_moment_after(sim, moments[0]) == moments[1]
    assert next_moment_after(sim, moments[-1]) is None
