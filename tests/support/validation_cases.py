"""Order bodies and the code the API answers each with (None: accepted): the table the dashboard's JavaScript
validation (services/api/dashboard/static/js/rules.js) and the API's `OrderRequest` must both match.

tests/unit/test_dashboard_rules.py holds Python to it, tests/browser/test_dashboard.py the page's JavaScript.
Timestamps are plain JSON that both sides read alike: accepted ones fall on the day after tomorrow (inside
the resting orders' default maximum lifetime, a week, whenever the table is built and read), refused ones years
away.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

BASE = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}
#: Midnight (UTC) of the day after tomorrow: 24-48 hours away, well inside the default 7-day cap.
SOON_DAY = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d")
FUTURE = f"{SOON_DAY}T00:00:00Z"
FAR = "2999-01-01T00:00:00Z"  # past the maximum lifetime
PAST = "2001-01-01T00:00:00Z"
OMIT = object()


def body(**changes: Any) -> dict[str, Any]:
    merged = {**BASE, **changes}
    return {name: value for name, value in merged.items() if value is not OMIT}


LIMIT = {"type": "limit", "limitPrice": "150"}
SNIPER = {"type": "sniper", "tokenOut": "WIF", "trigger": {"kind": "listing"}}
STOP = {"type": "stop", "stopPrice": "140"}
TRAILING = {"type": "trailing_stop", "trailBps": 200}
OCO = {"type": "oco", "takeProfitPrice": "160", "stopPrice": "140"}

CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("market minimal", body(), None),
    ("market, every optional field", body(slippageBps=100, userId="desk-1", clientOrderId="c-1"), None),
    ("amount as a JSON number", body(amount=2), None),
    ("amount with exponent", body(amount="1.5e2"), None),
    ("amount with underscores", body(amount="1_000"), "invalid_decimal"),
    ("amount with a plus sign", body(amount="+1.5"), None),
    ("amount spelled with 40 digits", body(amount="1." + "0" * 39), None),
    ("amount spelled with 41 digits", body(amount="1." + "0" * 40), "invalid_decimal"),
    ("limit price with 5000 trailing zeros", body(type="limit", limitPrice="150." + "0" * 5000), "invalid_decimal"),
    ("amount in Arabic-Indic digits", body(amount="\u0661"), "invalid_decimal"),
    ("amount in full-width digits", body(amount="\uff11"), "invalid_decimal"),
    ("amount in Devanagari digits with a point", body(amount="\u0967.\u0966"), "invalid_decimal"),
    ("amount with a non-breaking space around", body(amount="\u00a01.5"), "invalid_decimal"),
    ("amount with an exponent past Decimal's range", body(amount="1e999999999999999999999"), "invalid_decimal"),
    ("amount with spaces around", body(amount=" 1.5 "), None),
    ("amount at SOL's 9 decimals", body(amount="0.000000001"), None),
    ("amount trailing zeros beyond decimals", body(amount="1.50000000000"), None),
    ("amount at the maximum", body(amount="100000"), None),
    ("token names in any case, wSOL alias", body(tokenIn="wsol", tokenOut="usdc"), None),
    ("token with a long s, SOL once upper-cased", body(tokenIn="\u017fol"), "unknown_token"),
    ("token in full-width letters", body(tokenOut="\uff35\uff33\uff24\uff23"), "unknown_token"),
    ("token with an ideographic space around", body(tokenIn="\u3000SOL"), "unknown_token"),
    (
        "token with a dotless i",
        body(tokenOut="W\u0131F", **{"type": "sniper", "trigger": {"kind": "listing"}}),
        "unknown_token",
    ),
    ("token by mint address", body(tokenOut="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"), None),
    ("amount zero", body(amount="0"), "invalid_amount"),
    ("amount negative", body(amount="-1"), "invalid_amount"),
    ("amount negative zero", body(amount="-0"), "invalid_amount"),
    ("amount empty", body(amount=""), "invalid_decimal"),
    ("amount text", body(amount="abc"), "invalid_decimal"),
    ("amount NaN", body(amount="NaN"), "invalid_decimal"),
    ("amount Infinity", body(amount="Infinity"), "invalid_decimal"),
    ("amount boolean", body(amount=True), "invalid_decimal"),
    ("amount null", body(amount=None), "invalid_decimal"),
    ("amount huge exponent", body(amount="1e31"), "invalid_decimal"),
    ("amount tiny exponent", body(amount="1e-31"), "invalid_decimal"),
    ("amount two points", body(amount="1.2.3"), "invalid_decimal"),
    ("amount with a space inside", body(amount="1 000"), "invalid_decimal"),
    ("amount beyond SOL's decimals", body(amount="0.0000000001"), "invalid_amount"),
    ("amount past Decimal's 28 digits", body(amount="1.0000000000000000000000000000001"), "invalid_amount"),
    ("amount over the maximum", body(amount="100000.1"), "amount_too_large"),
    ("amount missing", body(amount=OMIT), "missing"),
    ("tokenIn missing", body(tokenIn=OMIT), "missing"),
    ("tokenIn not a string", body(tokenIn=5), "string_type"),
    ("tokenIn blank", body(tokenIn="  "), "string_too_short"),
    ("tokenIn too long", body(tokenIn="X" * 65), "string_too_long"),
    ("tokenIn unknown", body(tokenIn="DOGE"), "unknown_token"),
    ("tokenOut unknown mint", body(tokenOut="So11111111111111111111111111111111111111113"), "unknown_token"),
    ("same token", body(tokenOut="SOL"), "same_token"),
    ("SOL and wSOL are one token", body(tokenIn="wSOL", tokenOut="SOL"), "same_token"),
    ("slippageBps at the bound", body(slippageBps=5000), None),
    ("slippageBps zero", body(slippageBps=0), None),
    ("slippageBps over", body(slippageBps=5001), "less_than_equal"),
    ("slippageBps negative", body(slippageBps=-1), "greater_than_equal"),
    ("slippageBps as a string", body(slippageBps="50"), "int_type"),
    ("slippageBps fractional", body(slippageBps=50.5), "int_type"),
    ("slippageBps boolean", body(slippageBps=True), "int_type"),
    ("slippage fraction", body(slippage="0.01"), None),
    ("slippage agreeing with slippageBps", body(slippage="0.01", slippageBps=100), None),
    ("slippage over half", body(slippage="0.6"), "invalid_slippage"),
    ("slippage negative", body(slippage="-0.01"), "invalid_slippage"),
    ("slippage finer than a basis point", body(slippage="0.00015"), "invalid_slippage"),
    (
        "slippage finer than Decimal's 28 digits",
        body(slippage="0.01000000000000000000000000000001"),
        "invalid_slippage",
    ),
    ("slippage disagreeing", body(slippage="0.01", slippageBps=50), "slippage_mismatch"),
    ("limit order", body(**LIMIT), None),
    ("limit order expiring later", body(**LIMIT, expiresAt=FUTURE), None),
    ("limit without limitPrice", body(type="limit"), "missing_limit_price"),
    ("limit price zero", body(type="limit", limitPrice="0"), "invalid_limit_price"),
    ("limit price negative", body(type="limit", limitPrice="-5"), "invalid_limit_price"),
    ("limit price 15 digits", body(type="limit", limitPrice="123456789.012345"), None),
    ("limit price 16 digits", body(type="limit", limitPrice="1234567890.123456"), "invalid_limit_price"),
    (
        "limit price past Decimal's 28 digits",
        body(type="limit", limitPrice="1.00000000000000000000000000001"),
        "invalid_limit_price",
    ),
    (
        "limit price 15 digits and trailing zeros",
        body(type="limit", limitPrice="150.000000000000000000000000000"),
        None,
    ),
    ("limit price text", body(type="limit", limitPrice="cheap"), "invalid_decimal"),
    ("limitPrice on a market order", body(limitPrice="150"), "forbidden_field"),
    ("limit expired already", body(**LIMIT, expiresAt=PAST), "invalid_expires_at"),
    ("limit expiry past the maximum lifetime", body(**LIMIT, expiresAt=FAR), "invalid_expires_at"),
    ("sniper expiry past the maximum lifetime", body(**SNIPER, expiresAt=FAR), "invalid_expires_at"),
    (
        "limit expiry a day short of the calendar's end",
        body(**LIMIT, expiresAt="9999-12-30T00:00:00Z"),
        "invalid_expires_at",
    ),
    (
        "limit expiry past the calendar's end in UTC",
        body(**LIMIT, expiresAt="9999-12-31T23:59:59-23:59"),
        "invalid_expires_at",
    ),
    (
        "limit expiry before the calendar's start in UTC",
        body(**LIMIT, expiresAt="0001-01-01T00:00:00+23:59"),
        "invalid_expires_at",
    ),
    ("limit expiry without a zone", body(**LIMIT, expiresAt="2999-01-01T00:00:00"), "invalid_expires_at"),
    ("limit expiry with an offset", body(**LIMIT, expiresAt=f"{SOON_DAY}T00:00:00+02:00"), None),
    ("limit expiry not a time", body(**LIMIT, expiresAt="tomorrow"), "datetime_from_date_parsing"),
    ("limit expiry as a date alone", body(**LIMIT, expiresAt="2999-01-01"), "invalid_expires_at"),
    ("limit expiry with a compact offset", body(**LIMIT, expiresAt=f"{SOON_DAY}T00:00:00+0200"), None),
    (
        "limit expiry with an hours-only offset",
        body(**LIMIT, expiresAt="2999-01-01T00:00:00+02"),
        "datetime_from_date_parsing",
    ),
    (
        "limit expiry on a day that does not exist",
        body(**LIMIT, expiresAt="2999-02-29T00:00:00Z"),
        "datetime_from_date_parsing",
    ),
    ("limit expiry at hour 24", body(**LIMIT, expiresAt="2999-01-01T24:00:00Z"), "datetime_from_date_parsing"),
    (
        "limit expiry with spaces around",
        body(**LIMIT, expiresAt=" 2999-01-01T00:00:00Z "),
        "datetime_from_date_parsing",
    ),
    ("limit expiry with a space and nanoseconds", body(**LIMIT, expiresAt=f"{SOON_DAY} 00:00:00.123456789Z"), None),
    (
        "limit expiry in Arabic-Indic digits",
        body(**LIMIT, expiresAt="\u0662" + FUTURE[1:]),
        "datetime_from_date_parsing",
    ),
    ("limit expiry as Unix seconds", body(**LIMIT, expiresAt=int(datetime.now(UTC).timestamp()) + 86_400), None),
    (
        "limit expiry as Unix milliseconds, centuries away",
        body(**LIMIT, expiresAt=32503680000000),
        "invalid_expires_at",
    ),
    ("limit expiry as Unix seconds, text", body(**LIMIT, expiresAt="1"), "invalid_expires_at"),
    ("expiresAt on a market order", body(expiresAt=FUTURE), "forbidden_field"),
    ("sniper on listing", body(**SNIPER), None),
    ("sniper on listing expiring later", body(**SNIPER, expiresAt=FUTURE), None),
    ("sniper on liquidity", body(**{**SNIPER, "trigger": {"kind": "liquidity", "minLiquidity": "100000"}}), None),
    (
        "sniper liquidity threshold past Decimal's 28 digits",
        body(**{**SNIPER, "trigger": {"kind": "liquidity", "minLiquidity": "100000.0000000000000000000000001"}}),
        "invalid_min_liquidity",
    ),
    (
        "sniper liquidity threshold in full-width digits",
        body(**{**SNIPER, "trigger": {"kind": "liquidity", "minLiquidity": "\uff11\uff10\uff10"}}),
        "invalid_decimal",
    ),
    ("sniper without trigger", body(type="sniper", tokenOut="WIF"), "missing_trigger"),
    (
        "sniper liquidity without threshold",
        body(**{**SNIPER, "trigger": {"kind": "liquidity"}}),
        "missing_min_liquidity",
    ),
    (
        "sniper liquidity threshold zero",
        body(**{**SNIPER, "trigger": {"kind": "liquidity", "minLiquidity": "0"}}),
        "invalid_min_liquidity",
    ),
    (
        "sniper listing with a threshold",
        body(**{**SNIPER, "trigger": {"kind": "listing", "minLiquidity": "5"}}),
        "forbidden_field",
    ),
    ("sniper unknown trigger kind", body(**{**SNIPER, "trigger": {"kind": "rumour"}}), "literal_error"),
    ("sniper trigger not an object", body(**{**SNIPER, "trigger": "listing"}), "model_type"),
    ("sniper trigger extra field", body(**{**SNIPER, "trigger": {"kind": "listing", "x": 1}}), "extra_forbidden"),
    ("trigger on a market order", body(trigger={"kind": "listing"}), "forbidden_field"),
    ("stop order", body(**STOP), None),
    ("stop order expiring later", body(**STOP, expiresAt=FUTURE), None),
    ("stop without stopPrice", body(type="stop"), "missing_stop_price"),
    ("stop price zero", body(type="stop", stopPrice="0"), "invalid_stop_price"),
    ("stop price negative", body(type="stop", stopPrice="-140"), "invalid_stop_price"),
    ("stop price 16 digits", body(type="stop", stopPrice="1234567890.123456"), "invalid_stop_price"),
    ("stop price text", body(type="stop", stopPrice="low"), "invalid_decimal"),
    ("stop price as a JSON number", body(type="stop", stopPrice=140), None),
    ("stopPrice on a market order", body(stopPrice="140"), "forbidden_field"),
    ("stopPrice on a limit order", body(**LIMIT, stopPrice="140"), "forbidden_field"),
    ("stopPrice on a trailing stop", body(**TRAILING, stopPrice="140"), "forbidden_field"),
    ("limitPrice on a stop order", body(**STOP, limitPrice="150"), "forbidden_field"),
    ("trigger on a stop order", body(**STOP, trigger={"kind": "listing"}), "forbidden_field"),
    # Another type's field is refused before a missing own field is asked for.
    ("stop with a limit price instead of a stop price", body(type="stop", limitPrice="150"), "forbidden_field"),
    ("trailing stop", body(**TRAILING), None),
    ("trailing stop with an activation price", body(**TRAILING, activationPrice="155"), None),
    ("trailing stop expiring later", body(**TRAILING, expiresAt=FUTURE), None),
    ("trailing stop at the narrowest trail", body(**{**TRAILING, "trailBps": 1}), None),
    ("trailing stop at the widest trail", body(**{**TRAILING, "trailBps": 5000}), None),
    ("trailing stop without trailBps", body(type="trailing_stop"), "missing_trail_bps"),
    ("trailing stop with trailBps null", body(**{**TRAILING, "trailBps": None}), "missing_trail_bps"),
    ("trailBps zero", body(**{**TRAILING, "trailBps": 0}), "greater_than_equal"),
    ("trailBps negative", body(**{**TRAILING, "trailBps": -5}), "greater_than_equal"),
    ("trailBps over the widest trail", body(**{**TRAILING, "trailBps": 5001}), "less_than_equal"),
    ("trailBps as a string", body(**{**TRAILING, "trailBps": "200"}), "int_type"),
    ("trailBps fractional", body(**{**TRAILING, "trailBps": 200.5}), "int_type"),
    ("trailBps boolean", body(**{**TRAILING, "trailBps": True}), "int_type"),
    ("activation price zero", body(**TRAILING, activationPrice="0"), "invalid_activation_price"),
    ("activation price 16 digits", body(**TRAILING, activationPrice="1234567890.123456"), "invalid_activation_price"),
    ("activation price text", body(**TRAILING, activationPrice="soon"), "invalid_decimal"),
    ("activationPrice without a trail", body(type="trailing_stop", activationPrice="155"), "missing_trail_bps"),
    ("trailBps on a stop order", body(**STOP, trailBps=200), "forbidden_field"),
    ("activationPrice on a stop order", body(**STOP, activationPrice="155"), "forbidden_field"),
    ("trailBps on a market order", body(trailBps=200), "forbidden_field"),
    ("trailBps on a market order, out of range", body(trailBps=0), "greater_than_equal"),
    ("oco order", body(**OCO), None),
    ("oco order expiring later", body(**OCO, expiresAt=FUTURE), None),
    ("oco prices a hair apart", body(**{**OCO, "takeProfitPrice": "140.000000000001"}), None),
    ("oco without prices", body(type="oco"), "missing_stop_price"),
    ("oco without stopPrice", body(type="oco", takeProfitPrice="160"), "missing_stop_price"),
    ("oco without takeProfitPrice", body(type="oco", stopPrice="140"), "missing_take_profit_price"),
    ("oco take-profit equal to the stop", body(**{**OCO, "takeProfitPrice": "140.0"}), "invalid_oco_prices"),
    ("oco take-profit below the stop", body(**{**OCO, "takeProfitPrice": "139.99"}), "invalid_oco_prices"),
    ("oco stop price zero", body(**{**OCO, "stopPrice": "0"}), "invalid_stop_price"),
    ("oco take-profit price zero", body(**{**OCO, "takeProfitPrice": "0"}), "invalid_take_profit_price"),
    ("takeProfitPrice on a stop order", body(**STOP, takeProfitPrice="160"), "forbidden_field"),
    ("takeProfitPrice on a limit order", body(**LIMIT, takeProfitPrice="160"), "forbidden_field"),
    ("trailBps on an oco order", body(**OCO, trailBps=200), "forbidden_field"),
    ("limitPrice on an oco order", body(**OCO, limitPrice="150"), "forbidden_field"),
    ("unknown type", body(type="twap"), "enum"),
    ("type null", body(type=None), "enum"),
    ("userId too long", body(userId="x" * 65), "string_too_long"),
    ("userId with a control character", body(userId="a\u0001b"), "string_pattern_mismatch"),
    # Ids are echoed by the CLI, logs and the dashboard: nothing that drives a terminal or hides what it shows.
    ("userId with a C1 control (the one-byte CSI)", body(userId="a\u009b[31mb"), "string_pattern_mismatch"),
    ("clientOrderId with a bidi override", body(clientOrderId="a\u202eb"), "string_pattern_mismatch"),
    ("userId with a line separator", body(userId="a\u2028b"), "string_pattern_mismatch"),
    ("clientOrderId with a zero-width space", body(clientOrderId="a\u200bb"), "string_pattern_mismatch"),
    ("userId with an invisible tag character", body(userId="a\U000e0041b"), "string_pattern_mismatch"),
    ("userId with a BOM in front (not whitespace)", body(userId="\ufeffdesk"), "string_pattern_mismatch"),
    ("userId with a trailing NEL (whitespace, trimmed)", body(userId="desk\u0085"), None),
    ("userId and clientOrderId in other scripts", body(userId="désk-東", clientOrderId="ордер 🚀"), None),
    ("clientOrderId empty", body(clientOrderId=""), "string_too_short"),
    ("unknown field", body(extra=1), "extra_forbidden"),
    ("two bad fields at once", body(amount="0", slippageBps=9999), "validation_error"),
]
