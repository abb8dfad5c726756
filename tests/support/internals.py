"""Collecting every moved dramatiq internal in one failure (tests/unit/test_dramatiq_internals.py and
tests/integration/test_dramatiq_queue_format.py)."""

from __future__ import annotations

from collections.abc import Callable

import dramatiq
import pytest

from shared.execution import dramatiq_internals as internals


class Problems:
    """Collects every moved internal, so that one run names them all."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def check(self, internal: str, ok: bool, detail: str = "") -> None:
        if not ok:
            self.found.append(f"{internal}: {detail or 'not as expected'}")

    def attempt(self, internal: str, probe: Callable[[], object]) -> None:
        try:
            probe()
        except Exception as exc:  # an upgrade may break a probe in any way: report it with the rest
            self.found.append(f"{internal}: {type(exc).__name__}: {exc}")

    def raise_if_any(self) -> None:
        if self.found:
            pytest.fail(
                f"dramatiq {dramatiq.__version__} moved internals the engine relies on (tested with "
                f"dramatiq{internals.TESTED_RANGE}; see shared/execution/dramatiq_internals.py):\n  - "
                + "\n  - ".join(self.found),
                pytrace=False,
            )
