"""A loop that loses Redis says so once, then every REMIND_EVERY_S, then that it is back: a 30 s outage is
three lines per loop, not one per attempt (a runner restarting its Redis wrote ~20 lines a second)."""

from __future__ import annotations

from loguru import logger

from shared.outage_log import OutageLog


def test_an_outage_is_told_once_then_reminded_then_ended():
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="INFO")
    now = [100.0]
    try:
        outage = OutageLog("tick loop lost Redis", every_s=30, clock=lambda: now[0])
        outage.ok()  # nothing to say while all is well
        for _ in range(150):  # 60 s of attempts every 0.4 s: one reminder, at 30 s
            outage.failed(ConnectionError("Error 111 connecting"))
            now[0] += 0.4
        outage.ok()
        outage.ok()
        outage.failed("again")
    finally:
        logger.remove(sink)
    assert lines == [
        "tick loop lost Redis (Error 111 connecting); retrying",
        "tick loop lost Redis for 30 s, 76 attempts so far (Error 111 connecting); retrying",
        "tick loop lost Redis: back after 60.0 s, 150 failed attempts",
        "tick loop lost Redis (again); retrying",
    ]
