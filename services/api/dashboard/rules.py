"""What the dashboard's form needs to validate an order exactly as the API does, taken from the API's own
definitions (shared/domain) so a change there reaches the page without anyone editing JavaScript.

The checks themselves are mirrored in static/js/rules.js; tests/support/validation_cases.py is the table
both sides must agree on (tests/unit/test_dashboard_rules.py for Python, tests/browser for JavaScript).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, get_args

from annotated_types import Ge, Le, MaxLen, MinLen

from shared.domain import orders, tokens
from shared.domain.lifecycle import TERMINAL, OrderStatus
from shared.domain.order_types import PRICE_TRIGGERED_TYPES, OrderType
from shared.domain.orders import TYPE_FIELDS, TYPED_IN_CHECK_ORDER, OrderRequest, SniperTrigger, json_name, owners_of
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


def _integer_bounds(field_name: str) -> dict[str, int]:
    bounds: dict[str, int] = {}
    for item in OrderRequest.model_fields[field_name].metadata:
        if isinstance(item, Ge) and isinstance(item.ge, int):
            bounds["min"] = item.ge
        elif isinstance(item, Le) and isinstance(item.le, int):
            bounds["max"] = item.le
    return bounds


def _trigger_kinds() -> list[str]:
    return list(get_args(SniperTrigger.model_fields["kind"].annotation))


def _kind(field_name: str) -> str:
    """How the page reads and checks a type's field: an exact decimal, a strict integer, or the sniper's trigger."""
    annotation = get_args(OrderRequest.model_fields[field_name].annotation)
    if Decimal in annotation:
        return "decimal"
    if SniperTrigger in annotation:
        return "trigger"
    return "integer"


def _typed_fields() -> list[dict[str, Any]]:
    """Every field that belongs to some types only, in the order the API checks them (the model's field order),
    with the types that take it and the codes it is refused with (`OrderRequest._check_type_fields`)."""
    return [
        {
            "name": json_name(name),
            "kind": _kind(name),
            "owners": [t.value for t in owners_of(name)],
            "missingCode": f"missing_{name}",
            # Only prices are range-checked once present (> 0, at most maxPriceDigits significant digits).
            "invalidCode": f"invalid_{name}" if _kind(name) == "decimal" else None,
        }
        for name in TYPED_IN_CHECK_ORDER
    ]


def _type_fields() -> dict[str, dict[str, list[str]]]:
    """Each type's own fields by JSON name; the required ones in the order the API reports a missing one."""
    return {
        order_type.value: {
            "required": [json_name(name) for name in sorted(fields.required)],
            "optional": [json_name(name) for name in sorted(fields.optional)],
        }
        for order_type, fields in TYPE_FIELDS.items()
    }


def dashboard_rules(settings: Settings) -> dict[str, Any]:
    """Plain JSON: amounts as strings (the page compares them as exact decimals, never as floats)."""
    return {
        "orderTypes": [t.value for t in OrderType],
        "triggerKinds": _trigger_kinds(),
        "defaultSlippageBps": orders.DEFAULT_SLIPPAGE_BPS,
        "maxSlippageBps": orders.MAX_SLIPPAGE_BPS,
        "integerBounds": {"slippageBps": _integer_bounds("slippage_bps"), "trailBps": _integer_bounds("trail_bps")},
        "typeFields": _type_fields(),
        "typedFields": _typed_fields(),
        # Orders that wait for a BEST tick: the API refuses them on a pair the quote stream does not price.
        "priceTriggeredTypes": [t.value for t in OrderType if t in PRICE_TRIGGERED_TYPES],
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
