"""Conditional orders without a server: the contract's validation of the three types, and their rules."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.domain.conditional import trail_fires, trail_level
from shared.domain.orders import Order, OrderRequest, OrderType, accept
from shared.store.conditional_book import NOT_ARMED, resting_place

BASE = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"}


def body(**fields) -> dict:
    return {**BASE, **fields}


def refusal(payload: dict) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        OrderRequest.model_validate(payload)
    error = caught.value.errors()[0]
    return error["type"], error["msg"]


VALID = [
    body(type="stop", stopPrice="140"),
    body(type="trailing_stop", trailBps=1),
    body(type="trailing_stop", trailBps=5000, activationPrice="160"),
    body(type="oco", takeProfitPrice="160", stopPrice="140"),
]


@pytest.mark.parametrize("payload", VALID)
def test_each_type_with_its_own_fields_is_accepted(payload):
    OrderRequest.model_validate(payload)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (body(type="stop"), "missing_stop_price"),
        (body(type="stop", stopPrice="0"), "invalid_stop_price"),
        (body(type="stop", stopPrice="-1"), "invalid_stop_price"),
        (body(type="stop", stopPrice="1234567890.123456"), "invalid_stop_price"),
        (body(type="trailing_stop"), "missing_trail_bps"),
        (body(type="trailing_stop", trailBps=0), "greater_than_equal"),
        (body(type="trailing_stop", trailBps=5001), "less_than_equal"),
        (body(type="trailing_stop", trailBps="100"), "int_type"),
        (body(type="trailing_stop", trailBps=1.5), "int_type"),
        (body(type="trailing_stop", trailBps=100, activationPrice="0"), "invalid_activation_price"),
        (body(type="oco", stopPrice="140"), "missing_take_profit_price"),
        (body(type="oco", takeProfitPrice="160"), "missing_stop_price"),
        (body(type="oco", takeProfitPrice="140", stopPrice="140"), "invalid_oco_prices"),
        (body(type="oco", takeProfitPrice="130", stopPrice="140"), "invalid_oco_prices"),
    ],
)
def test_missing_or_bad_fields_are_refused_with_a_stable_code(payload, code):
    assert refusal(payload)[0] == code


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(stopPrice="140"), "stopPrice"),
        (body(trailBps=100), "trailBps"),
        (body(type="limit", limitPrice="150", stopPrice="140"), "stopPrice"),
        (body(type="stop", stopPrice="140", limitPrice="150"), "limitPrice"),
        (body(type="stop", stopPrice="140", takeProfitPrice="160"), "takeProfitPrice"),
        (body(type="stop", stopPrice="140", trailBps=100), "trailBps"),
        (body(type="trailing_stop", trailBps=100, stopPrice="140"), "stopPrice"),
        (body(type="oco", takeProfitPrice="160", stopPrice="140", activationPrice="150"), "activationPrice"),
        (body(type="oco", takeProfitPrice="160", stopPrice="140", trigger={"kind": "listing"}), "trigger"),
        (body(type="sniper", trigger={"kind": "listing"}, trailBps=5), "trailBps"),
    ],
)
def test_fields_of_another_type_are_refused_and_the_message_names_them(payload, field):
    code, message = refusal(payload)
    assert code == "forbidden_field"
    assert message.startswith(field)


def test_an_accepted_order_keeps_its_terms_through_its_stored_spec():
    order = accept(OrderRequest.model_validate(body(type="trailing_stop", trailBps=250, activationPrice="160.5")))
    assert order.type is OrderType.TRAILING_STOP
    assert order.conditions() == {"trailBps": 250, "activationPrice": "160.5"}
    restored = Order.from_spec(order.to_spec())
    assert (restored.type, restored.trail_bps, restored.activation_price) == (order.type, 250, Decimal("160.5"))
    assert restored.stop_price is None and restored.take_profit_price is None


def test_a_trailing_stop_rests_unarmed_in_its_widths_set_with_its_activation_beside():
    order = accept(OrderRequest.model_validate(body(type="trailing_stop", trailBps=250)))
    place = resting_place(order)
    assert (place.key, place.score, place.index_member) == ("cond:{p0}:SOL-USDC:trail:250", NOT_ARMED, "250")
    assert (place.second_key, place.second_member, place.second_score) == (
        "cond:{p0}:SOL-USDC:activations",
        f"250/{place.member}",
        "0",
    )


def test_an_oco_rests_on_both_sides_under_one_member():
    order = accept(OrderRequest.model_validate(body(type="oco", takeProfitPrice="160", stopPrice="140")))
    place = resting_place(order)
    assert (place.key, place.score, place.second_key, place.second_score) == (
        "cond:{p0}:SOL-USDC:stops",
        "140",
        "cond:{p0}:SOL-USDC:take-profits",
        "160",
    )
    assert place.second_member == place.member


@pytest.mark.parametrize(
    ("high", "bps", "best", "fires"),
    [
        ("100", 500, "95", True),  # on the level
        ("100", 500, "95.0000001", False),
        ("110", 500, "104.5", True),
        ("100", 1, "99.99", True),
        ("100", 5000, "50.01", False),
    ],
)
def test_a_trailing_stop_fires_at_or_below_its_level(high, bps, best, fires):
    assert trail_fires(Decimal(best), Decimal(high), bps) is fires
    assert (Decimal(best) <= trail_level(Decimal(high), bps)) is fires
