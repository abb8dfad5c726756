"""What the dashboard's form needs to validate an order exactly as the API does, taken from the API's own
definitions (shared/domain) so a change there reaches the page without anyone editing JavaScript.

The checks themselves are mirrored in static/js/rules.js; tests/support/validation_cases.py is the table
both sides must agree on (tests/unit/test_dashboard_rules.py for Python, tests/browser for JavaScript).
"""

from __future__ import annotations

from typing import Any, get_args

from annotated_types import MaxLen, MinLen

from shared.domain import orders, tokens
from shared.domain.lifecycle import TERMINAL, OrderStatus
from shared.domain.order_types import OrderType
from shared.domain.orders import OrderRequest, SniperTrigger
from shared.settings import Settings
from shared.venues.base import Dex


def _length_bounds(field_name: str) -> dict[str, int]:
    bounds: dict[str, int] = {}
    for item in OrderRequest.model_fields[field_name].metadata:
        if isinstance(item, MinLen):
            bounds["min"] = item.min_length
        elif isinstance(item, MaxLen):
            bounds["max"] = item.max_length
    return bounds


def _trigger_kinds() -> list[str]:
    return list(get_args(SniperTrigger.model_fields["kind"].annotation))


def dashboard_rules(settings: Settings) -> dict[str, Any]:
    """Plain JSON: amounts as strings (the page compares them as exact decimals, never as floats)."""
    return {
        "orderTypes": [t.value for t in OrderType],
        "triggerKinds": _trigger_kinds(),
        "defaultSlippageBps": orders.DEFAULT_SLIPPAGE_BPS,
        "maxSlippageBps": orders.MAX_SLIPPAGE_BPS,
        "maxPriceDigits": orders.MAX_PRICE_DIGITS,
        "maxDecimalExponent": orders.MAX_DECIMAL_EXPONENT,
        "maxDecimalDigits": orders.MAX_DECIMAL_DIGITS,
        "restingMaxLifetimeS": settings.resting_max_lifetime_s,
        "lengths": {
            "tokenIn": _length_bounds("token_in"),
            "tokenOut": _length_bounds("token_out"),
            "userId": _length_bounds("user_id"),
            "clientOrderId": _length_bounds("client_order_id"),
        },
        "tokens": [
            {
                "symbol": token.symbol,
                "mint": token.mint,
                "decimals": token.decimals,
                "maxOrderAmount": str(token.max_order_amount),
                "listedAtGenesis": token.listed_at_genesis,
            }
            for token in tokens.TOKENS.values()
        ],
        "aliases": dict(tokens.ALIASES),
        # Limit orders may rest only on pairs the quote stream prices (else the API answers pair_not_streamed);
        # they are also the pairs the chart can draw.
        "pairs": [f"{token_in}-{token_out}" for token_in, token_out in settings.pairs],
        "venues": [dex.value for dex in Dex],
        "statuses": [status.value for status in OrderStatus],
        "terminal": sorted(status.value for status in TERMINAL),
        "authEnabled": settings.auth_enabled,
    }
