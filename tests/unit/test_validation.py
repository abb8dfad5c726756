from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.domain.orders import OrderRequest, OrderType, accept

BASE = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5"}
FUTURE = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
PAST = (datetime.now(UTC) - timedelta(hours=1)).isoformat()


def body(**changes):
    merged = {**BASE, **changes}
    return {k: v for k, v in merged.items() if v is not ...}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (body(tokenIn="DOGE"), "unknown_token"),
        (body(tokenOut="So11111111111111111111111111111111111111113"), "unknown_token"),
        (body(tokenOut="SOL"), "same_token"),
        (body(tokenIn="wSOL", tokenOut="SOL"), "same_token"),
        (body(tokenOut="So11111111111111111111111111111111111111112"), "same_token"),
        (body(amount="0"), "invalid_amount"),
        (body(amount="-1"), "invalid_amount"),
        (body(amount="NaN"), "invalid_decimal"),
        (body(amount="Infinity"), "invalid_decimal"),
        (body(amount="abc"), "invalid_decimal"),
        (body(amount=True), "invalid_decimal"),
        (body(amount=None), "invalid_decimal"),
        (body(amount="0.0000000001"), "invalid_amount"),
        # More significant digits than Decimal's default context keeps: still 31 places, more than SOL's 9.
        (body(amount="1.0000000000000000000000000000001"), "invalid_amount"),
        (body(amount="100000.1"), "amount_too_large"),
        (body(amount=...), "missing"),
        (body(tokenIn=...), "missing"),
        (body(slippageBps=5001), "less_than_equal"),
        (body(slippageBps=-1), "greater_than_equal"),
        (body(slippageBps="50"), "int_type"),
        (body(slippageBps=50.5), "int_type"),
        (body(slippage="0.6"), "invalid_slippage"),
        (body(slippage="0.00015"), "invalid_slippage"),
        (body(slippage="0.01", slippageBps=50), "slippage_mismatch"),
        (body(limitPrice="150"), "forbidden_field"),
        (body(trigger={"kind": "listing"}), "forbidden_field"),
        (body(expiresAt=FUTURE), "forbidden_field"),
        (body(type="limit"), "missing_limit_price"),
        (body(type="limit", limitPrice="0"), "invalid_limit_price"),
        (body(type="limit", limitPrice="150", expiresAt=PAST), "invalid_expires_at"),
        (body(type="sniper"), "missing_trigger"),
        (body(type="stop"), "enum"),
        (body(userId="x" * 65), "string_too_long"),
        (body(clientOrderId=""), "string_too_short"),
        (body(extra=1), "extra_forbidden"),
    ],
)
def test_invalid_requests_are_refused_with_a_stable_code(payload, code):
    with pytest.raises(ValidationError) as caught:
        OrderRequest.model_validate(payload)
    assert code in {error["type"] for error in caught.value.errors()}


@pytest.mark.parametrize(
    ("payload", "slippage_bps"),
    [
        (body(), 50),
        (body(slippageBps=0), 0),
        (body(slippageBps=5000), 5000),
        (body(slippage="0.01"), 100),
        (body(slippage="0.01", slippageBps=100), 100),
        (body(slippage=Decimal("0.5")), 5000),
    ],
)
def test_slippage_spellings(payload, slippage_bps):
    assert OrderRequest.model_validate(payload).effective_slippage_bps == slippage_bps


@pytest.mark.parametrize(
    ("payload", "token_in", "token_out", "native_in", "native_out"),
    [
        (body(), "SOL", "USDC", True, False),
        (body(tokenIn="wsol"), "SOL", "USDC", False, False),
        (body(tokenIn="So11111111111111111111111111111111111111112"), "SOL", "USDC", False, False),
        (body(tokenIn="USDC", tokenOut="sol", amount="10"), "USDC", "SOL", False, True),
        (
            body(tokenIn="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", tokenOut="SOL", amount=10),
            "USDC",
            "SOL",
            False,
            True,
        ),
    ],
)
def test_tokens_are_normalised_and_sol_wrapping_remembered(payload, token_in, token_out, native_in, native_out):
    order = accept(OrderRequest.model_validate(payload))
    assert (order.token_in, order.token_out) == (token_in, token_out)
    assert (order.native_sol_in, order.native_sol_out) == (native_in, native_out)
    assert order.type is OrderType.MARKET


def test_amount_keeps_every_digit():
    order = accept(OrderRequest.model_validate(body(amount=Decimal("1.123456789"))))
    assert order.amount == Decimal("1.123456789")
    assert order.to_spec()["amount"] == "1.123456789"
