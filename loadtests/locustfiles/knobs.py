"""Scenario settings from the environment, so `make load` can pass them without locust options of its own."""

from __future__ import annotations

import os


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def env_str(name: str, default: str) -> str:
    raw = os.environ.get(name)
    return raw if raw not in (None, "") else default


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


#: How long a follower waits for an order's terminal event before reporting a timeout failure.
ORDER_TIMEOUT_S = env_float("LOAD_ORDER_TIMEOUT_S", 60)
#: Pause between one user's orders (uniform in [min, max]); the market and limit scenarios use it.
THINK_MIN_S = env_float("LOAD_THINK_MIN_S", 0.5)
THINK_MAX_S = env_float("LOAD_THINK_MAX_S", 1.5)
