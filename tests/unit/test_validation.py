from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import uuid4

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.domain import tokens, untrusted
from shared.domain.orders import DEFAULT_RESTING_MAX_LIFETIME_S, OrderRequest, OrderType, accept, describe_lifetime

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
        (body(type="twap"), "enum"),
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


# --- issue 13, "Bad input": one spelling per value ------------------------------------------------------------

LIMIT = {**BASE, "type": "limit", "limitPrice": "150"}


def refusal(payload, **context):
    with pytest.raises(ValidationError) as caught:
        OrderRequest.model_validate(payload, context=context or None)
    (error,) = caught.value.errors()
    return error["type"], error["msg"]


@pytest.mark.parametrize(
    "text",
    [
        "1_0",
        "\u0661",
        "\uff11",
        "\u0967.\u0966",
        "1\u00b2",
        "\u00a01",
        "1\u3000",
        "0x10",
        "1e",
        "e5",
        ".",
        "--1",
        "١e5",
    ],
)
def test_a_number_is_spelled_in_ascii_only(text):
    with pytest.raises(untrusted.NotADecimal) as caught:
        untrusted.parse_decimal(text)
    assert not caught.value.special
    assert refusal(body(amount=text))[0] == "invalid_decimal"


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", "1"), ("+1.5", "1.5"), ("-2", "-2"), (" 1.5e2\n", "150"), (".5", "0.5"), ("1.", "1"), ("0001", "1")],
)
def test_ascii_spellings_read_as_before(text, value):
    assert untrusted.parse_decimal(text) == Decimal(value)


@pytest.mark.parametrize("text", ["NaN", "-inf", "Infinity", "sNaN12"])
def test_nan_and_infinity_are_named_as_not_finite(text):
    with pytest.raises(untrusted.NotADecimal) as caught:
        untrusted.parse_decimal(text)
    assert caught.value.special
    assert refusal(body(amount=text)) == ("invalid_decimal", "amount must be finite")


def test_an_exponent_beyond_any_decimal_is_not_a_number_not_an_exception():
    assert refusal(body(amount="1e99999999999999999999999999999999999"))[0] == "invalid_decimal"


def test_significant_digits_are_counted_exactly_not_after_rounding_to_28():
    assert untrusted.significant_digits(Decimal("1.00000000000000000000000000001")) == 30
    assert untrusted.significant_digits(Decimal("150.000")) == 2
    assert untrusted.significant_digits(Decimal("0")) == 1
    assert refusal(body(type="limit", limitPrice="1.00000000000000000000000000001"))[0] == "invalid_limit_price"
    trigger = {"kind": "liquidity", "minLiquidity": "100000.0000000000000000000000001"}
    sniper = body(type="sniper", tokenOut="WIF", trigger=trigger)
    assert refusal(sniper)[0] == "invalid_min_liquidity"


def test_slippage_finer_than_a_basis_point_is_refused_however_many_digits_it_has():
    assert refusal(body(slippage="0.01000000000000000000000000000001"))[0] == "invalid_slippage"


def test_a_decimal_spelled_with_more_than_40_digits_is_refused():
    assert OrderRequest.model_validate(body(amount="1." + "0" * 39)).amount == 1
    assert refusal(body(amount="1." + "0" * 40))[0] == "invalid_decimal"
    assert refusal(body(type="limit", limitPrice="150." + "0" * 5000))[0] == "invalid_decimal"


@pytest.mark.parametrize(
    "name", ["\u017fol", "SO\u029f", "\uff33\uff2f\uff2c", "\u3000SOL", "SOL\u00a0", "W\u0131F", "BON\u212a"]
)
def test_a_token_that_is_known_only_after_unicode_folding_is_unknown(name):
    assert refusal(body(tokenIn=name))[0] == "unknown_token"
    with pytest.raises(tokens.UnknownToken):
        tokens.resolve(name)


def test_ascii_token_spellings_still_resolve():
    assert tokens.resolve(" sol ").symbol == tokens.resolve("Sol").symbol == "SOL"
    assert tokens.resolve("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v").symbol == "USDC"


def test_an_unknown_token_is_quoted_short():
    with pytest.raises(tokens.UnknownToken) as caught:
        tokens.resolve("x" * 5000)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    "moment", ["9999-12-31T23:59:59-23:59", "9999-12-31T23:00:00-01:00", "0001-01-01T00:00:00+00:01"]
)
def test_an_expiry_that_leaves_the_calendar_in_utc_is_refused_not_an_overflow(moment):
    assert refusal(body(**LIMIT, expiresAt=moment)) == (
        "invalid_expires_at",
        "expiresAt is outside the calendar once converted to UTC",
    )


def test_an_expiry_is_kept_in_utc():
    soon = (datetime.now(UTC) + timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5)))
    assert OrderRequest.model_validate(body(**LIMIT, expiresAt=soon.isoformat())).expires_at.utcoffset() == timedelta(0)


def test_an_expiry_past_the_maximum_lifetime_is_refused_with_the_cap_named():
    week = timedelta(seconds=DEFAULT_RESTING_MAX_LIFETIME_S)
    assert OrderRequest.model_validate(
        body(**LIMIT, expiresAt=(datetime.now(UTC) + week - timedelta(minutes=1)).isoformat())
    )
    code, message = refusal(body(**LIMIT, expiresAt=(datetime.now(UTC) + week + timedelta(minutes=1)).isoformat()))
    assert code == "invalid_expires_at" and "7 days" in message
    code, message = refusal(body(**LIMIT, expiresAt=FUTURE), resting_max_lifetime_s=1800)
    assert code == "invalid_expires_at" and "30 minutes" in message


@pytest.mark.parametrize("order_type", [OrderType.LIMIT, OrderType.SNIPER])
def test_a_resting_order_without_expiry_expires_after_the_maximum_lifetime(order_type):
    payload = (
        LIMIT if order_type is OrderType.LIMIT else body(type="sniper", tokenOut="WIF", trigger={"kind": "listing"})
    )
    order = accept(OrderRequest.model_validate(payload), resting_max_lifetime_s=3600)
    assert order.expires_at - order.created_at == timedelta(hours=1)
    assert accept(OrderRequest.model_validate(payload)).expires_at - order.created_at >= timedelta(days=7)


def test_a_market_order_never_gets_an_expiry():
    assert accept(OrderRequest.model_validate(body())).expires_at is None


@pytest.mark.parametrize(
    ("seconds", "text"), [(604800, "7 days"), (7200, "2 hours"), (90, "90 seconds"), (5400, "90 minutes")]
)
def test_lifetimes_are_described_in_their_largest_whole_unit(seconds, text):
    assert describe_lifetime(seconds) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("1_0", None),
        ("\u0661", None),
        ("\u00b2", None),
        ("+1", None),
        (" 1", None),
        ("", None),
        ("1234567890", None),
    ],
)
def test_ascii_uint_takes_ascii_digits_only(text, value):
    assert untrusted.ascii_uint(text, 9) == value


def test_uuids_are_read_in_ascii_only():
    order_id = uuid4()
    assert untrusted.parse_uuid(str(order_id)) == untrusted.parse_uuid(order_id.hex.upper()) == order_id
    spelled = str(order_id).translate(
        str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")
    )
    for text in (spelled, order_id.hex[:4] + "_" + order_id.hex[5:], f"{{{order_id}}}", "", "x" * 5000):
        with pytest.raises(ValueError):
            untrusted.parse_uuid(text)


def test_clip_keeps_a_short_echo_and_marks_a_cut():
    assert untrusted.clip("short") == "short"
    assert untrusted.clip("x" * 5000) == "x" * 64 + "… (5000 characters)"


def test_json_depth_is_bounded_without_recursion():
    deep = 1
    for _ in range(100_000):  # far deeper than any recursive walk survives
        deep = [deep]
    assert not untrusted.json_depth_within(deep)
    assert untrusted.json_depth_within({"trigger": {"kind": "listing"}})
    assert untrusted.json_depth_within(5) and untrusted.json_depth_within([[]] * 1000)


@pytest.mark.parametrize("text", ["1_0", "\u0661\u0660", "+5", " 5", "\uff15", "1e3", "9" * 19])
def test_query_numbers_are_ascii_digits_only(text):
    with pytest.raises(ValidationError):
        TypeAdapter(untrusted.AsciiInt).validate_python(text)
    assert TypeAdapter(untrusted.AsciiInt).validate_python("15") == 15
    assert TypeAdapter(untrusted.AsciiFloat).validate_python("1.5") == 1.5
    for bad in ("nan", "inf", "1_0", "\u0661"):
        with pytest.raises(ValidationError):
            TypeAdapter(untrusted.AsciiFloat).validate_python(bad)


def test_an_object_naming_a_field_twice_has_no_one_meaning():
    assert untrusted.unique_fields([("a", 1), ("b", 2)]) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="'amount' appears twice"):
        untrusted.unique_fields([("amount", "1"), ("tokenIn", "SOL"), ("amount", "1000")])
