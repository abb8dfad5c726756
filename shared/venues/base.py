"""The venue port: what the engine needs from a DEX, whatever implements it.

Adapters: `simulated.SimulatedVenue` (Raydium- and Meteora-like pools over a ledger). The engine only sees
`Venue`, `Quote`, `SwapTransaction` and `TxOutcome`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from shared.venues.slots import RecentBlockhash


class Dex(StrEnum):
    RAYDIUM = "raydium"
    METEORA = "meteora"


class VenueUnavailable(Exception):
    """A transient failure of one venue call (timeout, RPC error): worth retrying."""


class BlockhashExpired(VenueUnavailable):
    """The chain refused a transaction whose blockhash is too old: it must be built again on a recent one."""


class NoPool(VenueUnavailable):
    """The venue has no pool for the pair (yet: a token that has not launched there)."""


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    token_in: str
    token_out: str
    amount_in: Decimal


class Curve(Protocol):
    """A pool's output as a function of its input, as the split router (shared/route_split.py) sees it.
    Concave: no unit of input pays more than the one before it."""

    @property
    def fee(self) -> Decimal: ...

    @property
    def best_rate(self) -> Decimal:
        """Output per unit of input, fee paid, of the first infinitesimal unit."""
        ...

    def input_above_rate(self, rate: Decimal) -> Decimal:
        """How much input the pool takes while each next unit still pays more than `rate`."""
        ...

    def amount_out(self, amount_in: Decimal) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class Quote:
    dex: Dex
    token_in: str
    token_out: str
    amount_in: Decimal
    #: Net output after the venue's fee and the pool's price impact, in tokenOut.
    amount_out: Decimal
    #: The venue's fee as a fraction (0.0025 = 0.25 %).
    fee: Decimal
    #: amount_out / amount_in: the net price of 1 tokenIn in tokenOut for this size.
    price: Decimal
    #: Mid price before the trade, tokenOut per tokenIn.
    mid_price: Decimal
    #: How much worse than mid this size executes (fraction).
    price_impact: Decimal
    #: Pool depth expressed in tokenOut.
    liquidity: Decimal
    #: UTC epoch seconds the quote is valid for.
    ts: float
    #: Simulated time the venue took to answer, in ms.
    latency_ms: int = 0
    #: The pool this quote was priced on (tokenIn → tokenOut), for routers that split across venues.
    pool: Curve | None = None

    def as_dict(self) -> dict[str, str | int | float]:
        return {
            "dex": self.dex.value,
            "amountIn": str(self.amount_in),
            "amountOut": str(self.amount_out),
            "fee": str(self.fee),
            "price": str(self.price),
            "midPrice": str(self.mid_price),
            "priceImpact": str(self.price_impact),
            "liquidity": str(self.liquidity),
            "ts": self.ts,
            "latencyMs": self.latency_ms,
        }


@dataclass(frozen=True, slots=True)
class SwapLeg:
    """One venue's part of a swap: how much of tokenIn is sold into its pool."""

    dex: Dex
    amount_in: Decimal


@dataclass(frozen=True, slots=True)
class LegResult:
    """What one leg of a landed swap paid."""

    dex: Dex
    amount_in: Decimal
    amount_out: Decimal

    def as_dict(self) -> dict[str, str]:
        return {"dex": self.dex.value, "inAmount": str(self.amount_in), "outAmount": str(self.amount_out)}


class Legged:
    """A swap made of legs, largest first: its venue is the largest leg's, its input their total."""

    __slots__ = ()
    legs: tuple[SwapLeg, ...]

    @property
    def dex(self) -> Dex:
        return self.legs[0].dex

    @property
    def amount_in(self) -> Decimal:
        return sum((leg.amount_in for leg in self.legs), Decimal(0))


@dataclass(frozen=True, slots=True)
class SwapTransaction(Legged):
    """A built, signed swap of one or more legs, which land together or not at all. `tx_hash` is derived from
    the order, the attempt and the legs, so rebuilding the same transaction gives the same hash."""

    order_id: UUID
    attempt: int
    #: Largest first: its venue is the one the transaction is said to go to (`dex`).
    legs: tuple[SwapLeg, ...]
    token_in: str
    token_out: str
    #: The least total output across the legs the transaction accepts; below it nothing executes.
    min_amount_out: Decimal
    #: The recent blockhash it was built on, and the last slot in which it may land (shared/venues/slots.py).
    blockhash: str
    last_valid_slot: int
    tx_hash: str
    #: Human-readable instruction list, e.g. ["wrapSol", "swap:raydium", "swap:meteora", "unwrapSol"].
    instructions: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, object]:
        return {
            "dex": self.dex.value,
            "txHash": self.tx_hash,
            "amountIn": str(self.amount_in),
            "minAmountOut": str(self.min_amount_out),
            "legs": [{"dex": leg.dex.value, "inAmount": str(leg.amount_in)} for leg in self.legs],
            "blockhash": self.blockhash,
            "lastValidSlot": self.last_valid_slot,
            "instructions": list(self.instructions),
        }


@dataclass(frozen=True, slots=True)
class Submission:
    """A sent transaction: its hash, and the simulated time the venue took to accept it (in ms)."""

    tx_hash: str
    latency_ms: int = 0
    #: The chain's slot when it accepted the transaction.
    slot: int = 0


#: The error of a transaction that did not land while its blockhash was valid: it never will.
BLOCKHASH_EXPIRED = "blockhash_expired"


class TxStatus(StrEnum):
    CONFIRMED = "confirmed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class TxOutcome:
    tx_hash: str
    status: TxStatus
    amount_out: Decimal | None = None
    executed_price: Decimal | None = None
    #: Stable error code when failed: "slippage_exceeded", "nonce_used", ...
    error: str | None = None
    message: str | None = None
    #: Simulated time between submission and landing, in ms.
    latency_ms: int = 0
    #: Each leg's part of `amount_out`, when confirmed.
    legs: tuple[LegResult, ...] = ()


class Venue(Protocol):
    dex: Dex

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        """Price `amount_in` of token_in now. Raises VenueUnavailable on a transient failure."""

    async def quote_many(self, requests: Sequence[QuoteRequest]) -> list[Quote | VenueUnavailable]:
        """Price several pairs in one request, as a poller asks (one RPC for many accounts): one answer per
        request, in order, each a Quote or the reason that pair has none (NoPool). Raises VenueUnavailable
        when the request as a whole fails."""

    def recent_blockhash(self) -> RecentBlockhash:
        """A blockhash to build a transaction on, and the last slot it lets the transaction land in."""

    async def submit(self, tx: SwapTransaction) -> Submission:
        """Send a transaction; idempotent for the same tx_hash. Raises VenueUnavailable (BlockhashExpired when
        its blockhash is too old to be accepted)."""

    async def was_sent(self, tx_hash: str) -> bool:
        """Whether a transaction with this hash ever reached the chain."""

    async def confirm(self, tx_hash: str) -> TxOutcome:
        """Wait until the transaction has landed, or certainly never will (error "blockhash_expired": its
        blockhash's last valid slot is past), and return what happened; idempotent."""
