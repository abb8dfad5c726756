"""The simulated chain's slot clock: a slot every SLOT_S from the simulation's epoch, as Solana's ~400 ms; and
its blockhashes: a transaction names a recent one, and the chain takes it only until that blockhash is
`valid_slots` old (Solana: 150 slots, about a minute). Past that slot the transaction can never land, which is
what lets a sender re-send safely: once the slot is past, the first transaction is certainly dead."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import base58

SLOT_S = 0.4
#: Solana's: a blockhash stays valid for 150 slots after its own.
BLOCKHASH_VALID_SLOTS = 150


@dataclass(frozen=True, slots=True)
class RecentBlockhash:
    blockhash: str
    #: The last slot in which a transaction built on it may land.
    last_valid_slot: int


def slot_at(t: float, epoch: float) -> int:
    """The slot in progress at UTC epoch seconds `t` (0 before the epoch)."""
    return max(0, int((t - epoch) / SLOT_S))


def slot_start(slot: int, epoch: float) -> float:
    """UTC epoch seconds at which `slot` begins."""
    return epoch + slot * SLOT_S


def recent_blockhash(seed: str, t: float, epoch: float, valid_slots: int = BLOCKHASH_VALID_SLOTS) -> RecentBlockhash:
    """The blockhash of the slot in progress at t, as the chain's RPC would answer at that moment."""
    slot = slot_at(t, epoch)
    digest = hashlib.blake2b(f"{seed}:blockhash:{slot}".encode(), digest_size=32).digest()
    return RecentBlockhash(base58.b58encode(digest).decode(), slot + valid_slots)


def certainly_expired_at(last_valid_slot: int, epoch: float) -> float:
    """When a transaction whose blockhash is valid through `last_valid_slot` can no longer land."""
    return slot_start(last_valid_slot + 1, epoch)
