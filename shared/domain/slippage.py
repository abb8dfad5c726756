"""Slippage protection: the least output an order accepts, and the check against what was executed."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

BPS = Decimal(10_000)


def min_amount_out(quoted_out: Decimal, slippage_bps: int, decimals: int) -> Decimal:
    """quotedOut × (1 − slippageBps/10000), rounded down to what the output token can represent."""
    bound = quoted_out * (BPS - slippage_bps) / BPS
    return bound.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)


def within_slippage(executed_out: Decimal, minimum_out: Decimal) -> bool:
    return executed_out >= minimum_out
