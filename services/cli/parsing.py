"""Small parsers shared by commands (kept free of heavy imports: every command loads this)."""

from __future__ import annotations

import re

import typer

DURATION_UNITS_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration_s(text: str) -> float:
    """`90`, `90s`, `15m`, `24h`, `7d` → seconds."""
    match = _DURATION.match(text.lower())
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 15m, 24h or 7d")
    return float(match.group(1)) * DURATION_UNITS_S[match.group(2)]
