"""Limit-order arithmetic: price buckets, the crossing rule, and trigger order. Pure, no Redis.

A limit order sells `amount` of tokenIn and triggers once the BEST price of tokenIn in tokenOut reaches
its limit: `best >= limitPrice`. Both sides of a market are covered by the two directions of a pair
(selling SOL for USDC rests on SOL-USDC; buying SOL with USDC sells USDC and rests on USDC-SOL), so one
rule serves both.

Orders are grouped into buckets of one price tick; an index of non-empty buckets, scored by their floor
price, lets a tick find every crossed bucket with one range query. Crossed orders trigger best price
first (the lowest limit, the most aggressive seller), then oldest first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from uuid import UUID

from shared.domain.tokens import TOKENS

#: Buckets are this many times finer than the pair's reference price (1e-3 = 0.1 % wide).
TICK_FRACTION_EXPONENT = -3


def tick_size(token_in: str, token_out: str) -> Decimal:
    """A power of ten about a thousandth of the pair's listed price: 0.1 USDC for SOL-USDC."""
    price = TOKENS[token_in].usd_price / TOKENS[token_out].usd_price
    return Decimal(1).scaleb(math.floor(math.log10(price)) + TICK_FRACTION_EXPONENT)


def bucket_of(price: Decimal, tick: Decimal) -> int:
    return int((price / tick).to_integral_value(rounding=ROUND_FLOOR))


def bucket_floor(bucket: int, tick: Decimal) -> Decimal:
    return bucket * tick


def crosses(best_price: Decimal, limit_price: Decimal) -> bool:
    return best_price >= limit_price


def crossed_buckets(bucket_floors: Iterable[tuple[int, Decimal]], best_price: Decimal) -> list[int]:
    """Buckets that may hold crossed orders: every one whose floor is at or below the price."""
    return [bucket for bucket, floor in sorted(bucket_floors, key=lambda b: b[1]) if floor <= best_price]


def rest_member(created_at: datetime, order_id: UUID) -> str:
    """A bucket member that sorts by time among equal prices (Redis orders equal scores by member)."""
    micros = int(created_at.timestamp() * 1_000_000)
    return f"{micros:017d}:{order_id}"


def order_id_of(member: str | bytes) -> UUID:
    text = member.decode() if isinstance(member, bytes) else member
    return UUID(text.partition(":")[2])


@dataclass(frozen=True, slots=True)
class RestingLimit:
    order_id: UUID
    limit_price: Decimal
    created_at: datetime


def trigger_order(orders: Iterable[RestingLimit], best_price: Decimal) -> list[RestingLimit]:
    """The orders a tick at `best_price` triggers, in the order they trigger."""
    crossed = [o for o in orders if crosses(best_price, o.limit_price)]
    return sorted(crossed, key=lambda o: (o.limit_price, o.created_at, str(o.order_id)))
