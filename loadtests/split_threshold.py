"""From what size an order splits across the venues: per pair, the smallest amount whose best route has two
legs, searched at 48 moments of a simulated day (the venues' offsets and Meteora's fee move with the walk).

Pure: it prices the simulated pools directly, as the executor's routing does, with no engine running.

    uv run python loadtests/split_threshold.py
"""

from __future__ import annotations

import statistics
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from shared.routing import choose_route  # noqa: E402
from shared.venues.base import Dex  # noqa: E402
from shared.venues.market import quote_at  # noqa: E402
from shared.venues.simulated import SimConfig  # noqa: E402

#: Pairs, and an amount that always splits (the search's upper end).
PAIRS = (
    ("SOL", "USDC", Decimal(20_000)),
    ("USDC", "SOL", Decimal(3_000_000)),
    ("JUP", "USDC", Decimal(2_000_000)),
    ("BONK", "SOL", Decimal(10**11)),
)
MOMENTS, SPACING_S = 48, 1_800.0
STEPS = 30


def splits(sim: SimConfig, token_in: str, token_out: str, amount: Decimal, t: float) -> bool:
    quotes = [quote_at(dex, token_in, token_out, amount, t, sim) for dex in Dex]
    return choose_route(quotes, token_in, token_out, amount).shape == "split"


def threshold(sim: SimConfig, token_in: str, token_out: str, high: Decimal, t: float) -> Decimal | None:
    if not splits(sim, token_in, token_out, high, t):
        return None
    low = Decimal(0)
    for _ in range(STEPS):
        middle = ((low + high) / 2).quantize(Decimal("0.001"))
        low, high = (low, middle) if splits(sim, token_in, token_out, middle, t) else (middle, high)
    return high


def main() -> None:
    sim = SimConfig(seed="split-threshold", epoch=1_700_000_000.0)
    for token_in, token_out, high in PAIRS:
        found = [threshold(sim, token_in, token_out, high, sim.epoch + 600 + k * SPACING_S) for k in range(MOMENTS)]
        sizes = [size for size in found if size is not None]
        print(
            f"{token_in}→{token_out}: splits from {min(sizes):.6g} (median {statistics.median(sizes):.6g}, "
            f"at most {max(sizes):.6g}) {token_in}; never split at {found.count(None)} of {MOMENTS} moments"
        )


if __name__ == "__main__":
    main()
