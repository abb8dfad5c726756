"""The simulated chain's slot clock: a slot every SLOT_S from the simulation's epoch, as Solana's ~400 ms."""

from __future__ import annotations

SLOT_S = 0.4


def slot_at(t: float, epoch: float) -> int:
    """The slot in progress at UTC epoch seconds `t` (0 before the epoch)."""
    return max(0, int((t - epoch) / SLOT_S))
