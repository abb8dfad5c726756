"""A pool's state as text, for the quote cache: what `GET /api/quote` splits across without asking a venue.

One JSON object per pool, `kind` first, every number a decimal string. A kind this module does not know is
refused on both sides rather than guessed at.
"""

from __future__ import annotations

from decimal import Decimal

import orjson

from shared.venues.base import Curve
from shared.venues.meteora import DlmmPool
from shared.venues.raydium import CpmmPool


class UnknownPool(ValueError):
    """A pool of a kind the cache cannot write or read."""


def pool_to_json(pool: Curve) -> str:
    if isinstance(pool, CpmmPool):
        state = {"kind": "cpmm", "reserveIn": pool.reserve_in, "reserveOut": pool.reserve_out, "fee": pool.fee}
    elif isinstance(pool, DlmmPool):
        state = {
            "kind": "dlmm",
            "midPrice": pool.mid_price,
            "activeOut": pool.active_out,
            "activeIn": pool.active_in,
            "fee": pool.fee,
            "binStepBps": pool.bin_step_bps,
            "decay": pool.decay,
            "binCount": pool.bin_count,
        }
    else:
        raise UnknownPool(f"no state format for {type(pool).__name__}")
    return orjson.dumps(
        {name: value if isinstance(value, str | int) else str(value) for name, value in state.items()}
    ).decode()


def pool_from_json(text: str | bytes) -> CpmmPool | DlmmPool:
    state = orjson.loads(text)
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind == "cpmm":
        return CpmmPool(Decimal(state["reserveIn"]), Decimal(state["reserveOut"]), Decimal(state["fee"]))
    if kind == "dlmm":
        return DlmmPool(
            mid_price=Decimal(state["midPrice"]),
            active_out=Decimal(state["activeOut"]),
            active_in=Decimal(state["activeIn"]),
            fee=Decimal(state["fee"]),
            bin_step_bps=int(state["binStepBps"]),
            decay=Decimal(state["decay"]),
            bin_count=int(state["binCount"]),
        )
    raise UnknownPool(f"no pool of kind {kind!r}")
