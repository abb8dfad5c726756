"""`order-engine submit` for stop, trailing stop and OCO orders: the type follows from --stop, --take-profit and
--trail, options of two types are a usage error, the client-side check is the API's, and `submit`, `watch`
and `orders` say what each conditional order waits for and what fired it."""

import re

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from services.api.errors import from_validation
from services.cli.app import app
from services.cli.display import HAPPY_PATHS, RESTING_PATH, LiveDisplay, describe
from services.cli.errors import CliError, ExitCode
from services.cli.history import _history_row
from services.cli.submit import check_order, order_body
from services.cli.watch import headline, trail_now, with_resting_terms
from shared.domain import orders as domain
from shared.domain.order_types import CONDITIONAL_TYPES, OrderType

PAIR = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "2"}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"stop_price": "140"}, {"type": "stop", "stopPrice": "140"}),
        (
            {"take_profit_price": "165", "stop_price": "140"},
            {"type": "oco", "takeProfitPrice": "165", "stopPrice": "140"},
        ),
        ({"trail_bps": 300}, {"type": "trailing_stop", "trailBps": 300}),
        (
            {"trail_bps": 300, "activation_price": "160"},
            {"type": "trailing_stop", "trailBps": 300, "activationPrice": "160"},
        ),
        ({"take_profit_price": "165"}, {"type": "oco", "takeProfitPrice": "165"}),  # the check asks for its stop
        ({"activation_price": "160"}, {"type": "trailing_stop", "activationPrice": "160"}),  # ... for its trail
        ({"order_type": OrderType.STOP, "trail_bps": 300}, {"type": "stop", "trailBps": 300}),  # ... refuses it
    ],
)
def test_the_type_follows_from_the_conditional_options(options, expected):
    assert order_body("SOL", "USDC", "2", **options) == {**PAIR, **expected}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"limit_price": "155", "stop_price": "140"},
            "--limit-price and --stop make different order types (limit, stop)",
        ),
        (
            {"stop_price": "140", "trail_bps": 300},
            "--stop and --trail make different order types (stop, trailing_stop)",
        ),
        (
            {"listing": True, "take_profit_price": "165", "stop_price": "140"},
            "--listing, --stop and --take-profit make",
        ),
        ({"take_profit_price": "165", "activation_price": "160"}, "(oco, trailing_stop)"),
        ({"min_liquidity": "5", "trail_bps": 300}, "(sniper, trailing_stop)"),
        ({"order_type": OrderType.OCO, "limit_price": "1", "trail_bps": 3}, "(limit, trailing_stop)"),
    ],
)
def test_options_of_two_order_types_are_a_usage_error(options, message):
    with pytest.raises(typer.BadParameter, match=re.escape(message)):
        order_body("SOL", "USDC", "2", **options)


BAD_CONDITIONAL_BODIES = [
    order_body("SOL", "USDC", "2", take_profit_price="165"),
    order_body("SOL", "USDC", "2", take_profit_price="140", stop_price="165"),
    order_body("SOL", "USDC", "2", take_profit_price="140", stop_price="140"),
    order_body("SOL", "USDC", "2", stop_price="0"),
    order_body("SOL", "USDC", "2", stop_price="1.0000000000000001"),
    order_body("SOL", "USDC", "2", trail_bps=0),
    order_body("SOL", "USDC", "2", trail_bps=5001),
    order_body("SOL", "USDC", "2", trail_bps=300, activation_price="-1"),
    order_body("SOL", "USDC", "2", activation_price="160"),
    order_body("SOL", "USDC", "2", order_type=OrderType.STOP, trail_bps=300),
    order_body("SOL", "USDC", "2", order_type=OrderType.LIMIT, stop_price="140"),
    order_body("SOL", "USDC", "2", order_type=OrderType.MARKET, stop_price="140"),
]


@pytest.mark.parametrize("body", BAD_CONDITIONAL_BODIES)
def test_a_bad_conditional_order_gets_the_apis_code_and_message_here(body):
    with pytest.raises(ValidationError) as api_refusal:
        domain.OrderRequest.model_validate(body)
    api = from_validation(api_refusal.value)
    with pytest.raises(CliError) as refused:
        check_order(body, None)
    assert refused.value.code == api.code and refused.value.exit_code is ExitCode.FAILED
    assert api.message in refused.value.message and refused.value.details == api.details


def test_good_conditional_orders_pass_the_check():
    for options in (
        {"stop_price": "140"},
        {"take_profit_price": "165", "stop_price": "140"},
        {"trail_bps": 1},
        {"trail_bps": 5000, "activation_price": "160", "expires_at": None, "slippage_bps": 100},
    ):
        check_order(order_body("SOL", "USDC", "2", **options), None)


runner = CliRunner()


def test_the_command_line_refuses_options_of_two_types_before_reaching_the_api():
    # The API address is unreachable on purpose: a usage error or a local check must come first.
    unreachable = ("--api", "http://127.0.0.1:9")
    both = runner.invoke(app, ["submit", "SOL", "USDC", "2", "--stop", "140", "--trail", "300", *unreachable])
    assert both.exit_code == ExitCode.USAGE, both.output
    assert "--stop and --trail make different order types" in both.output
    fraction = runner.invoke(app, ["submit", "SOL", "USDC", "2", "--trail", "2.5", *unreachable])
    assert fraction.exit_code == ExitCode.USAGE, fraction.output
    swapped = runner.invoke(app, ["submit", "SOL", "USDC", "2", "--take-profit", "140", "--stop", "165", *unreachable])
    assert swapped.exit_code == ExitCode.FAILED, swapped.output
    assert "takeProfitPrice must be above stopPrice (invalid_oco_prices; checked here" in swapped.output


def test_submit_help_names_the_conditional_options():
    shown = runner.invoke(app, ["submit", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    for option in ("--stop", "--take-profit", "--trail", "--activation"):
        assert option in shown.output, option


# --- what the display says ------------------------------------------------------------------------------------


def event(seq: int, status: str, order_type: str, **fields) -> dict:
    return {
        "type": "status",
        "orderId": "o-1",
        "seq": seq,
        "status": status,
        "orderType": order_type,
        "timestamp": "2030-01-01T12:00:00.250Z",
        "attempt": None,
        **fields,
    }


def test_every_conditional_type_shows_the_resting_path():
    assert all(HAPPY_PATHS[order_type] == RESTING_PATH for order_type in CONDITIONAL_TYPES)
    display = LiveDisplay({"orderId": "o-1", "type": "trailing_stop"})
    assert display.path == RESTING_PATH


def test_waiting_says_what_each_conditional_order_waits_for():
    stop = event(2, "waiting", "stop", stopPrice="140")
    assert describe(stop) == "resting until the BEST price is ≤ 140 (stop)"
    oco = event(2, "waiting", "oco", takeProfitPrice="165", stopPrice="140")
    assert describe(oco) == "resting until the BEST price is ≥ 165 (take-profit) or ≤ 140 (stop)"
    trailing = event(2, "waiting", "trailing_stop", trailBps=300)
    assert describe(trailing) == (
        "resting until the BEST price falls 300 bps below its high since armed (armed at the next tick)"
    )
    activated = event(2, "waiting", "trailing_stop", trailBps=300, activationPrice="160")
    assert describe(activated).endswith("(armed at the first BEST ≥ 160)")
    assert describe(event(2, "waiting", "limit", limitPrice="155")) == "resting until the BEST price reaches 155"


def test_triggered_says_which_condition_fired_at_what_price_and_high():
    stop = event(3, "triggered", "stop", trigger="stop", triggerPrice="139.5", stopPrice="140")
    assert describe(stop) == "stop: BEST price 139.5 ≤ stop 140"
    take_profit = event(
        3, "triggered", "oco", trigger="take_profit", triggerPrice="165.2", takeProfitPrice="165", stopPrice="140"
    )
    assert describe(take_profit) == "take-profit: BEST price 165.2 ≥ take-profit 165"
    stopped = {**take_profit, "trigger": "stop", "triggerPrice": "139.9"}
    assert describe(stopped) == "stop: BEST price 139.9 ≤ stop 140"
    trail = event(
        3, "triggered", "trailing_stop", trigger="trail", triggerPrice="150.3", highWaterMark="155", trailBps=300
    )
    assert describe(trail) == "trail: BEST price 150.3 ≤ level 150.35 (high 155 − 300 bps)"
    # The terms may come from the order rather than the event; a missing high still reads.
    bare = {key: value for key, value in trail.items() if key not in ("trailBps", "highWaterMark")}
    assert describe(bare, {"trailBps": 300}) == "trail: BEST price 150.3 fell 300 bps below its high"
    # The other resting types read as before.
    limit = event(3, "triggered", "limit", triggerPrice="156", limitPrice="155")
    assert describe(limit) == "BEST price 156 crossed the limit 155"
    sniper = event(3, "triggered", "sniper", trigger={"kind": "listing"}, venueEvent={"kind": "already_met"})
    assert describe(sniper) == "its condition already held"


def test_watch_shows_the_terms_and_a_trailing_stops_level_now():
    order = {"orderId": "o-1", "type": "oco", **PAIR, "takeProfitPrice": "165", "stopPrice": "140", "slippageBps": 50}
    assert headline(order) == (
        "oco: sell 2 SOL for USDC when the BEST price is ≥ 165 (take-profit) or ≤ 140 (stop), slippage 50 bps"
    )
    state = {
        "orderId": "o-1",
        "type": "trailing_stop",
        **PAIR,
        "status": "waiting",
        "events": [event(1, "pending", "trailing_stop"), event(2, "waiting", "trailing_stop", trailBps=300)],
    }
    assert with_resting_terms(state)["trailBps"] == 300
    assert "falls 300 bps below its high" in headline(state)
    assert trail_now(state) == ""
    assert trail_now({**state, "armed": False}) == ", not armed yet"
    armed = {**state, "armed": True, "highWaterMark": "155", "stopLevel": "150.35"}
    assert trail_now(armed) == ", armed: high 155, stop level 150.35"


def test_history_shows_a_resting_orders_terms_until_it_executes():
    rows = [
        ({"type": "stop", "stopPrice": "140"}, "stop 140"),
        ({"type": "oco", "takeProfitPrice": "165", "stopPrice": "140"}, "tp 165 / stop 140"),
        ({"type": "trailing_stop", "trailBps": 300}, "trail 300 bps"),
        ({"type": "trailing_stop", "trailBps": 300, "activationPrice": "160"}, "trail 300 bps from 160"),
        ({"type": "limit", "limitPrice": "155"}, "limit 155"),
        ({"type": "stop", "stopPrice": "140", "executedPrice": "139.8"}, "139.8"),
        ({"type": "market"}, None),
    ]
    for order, price in rows:
        assert _history_row({**PAIR, **order})["price"] == price, order


def test_oco_in_one_option_is_take_profit_then_stop():
    from services.cli.submit import oco_prices

    assert oco_prices("165:140", None, None) == ("165", "140")
    assert oco_prices(None, "165", "140") == ("165", "140")
    for bad in ("165", "165:", ":140"):
        with pytest.raises(typer.BadParameter, match="TAKE_PROFIT:STOP"):
            oco_prices(bad, None, None)
    with pytest.raises(typer.BadParameter, match="not both"):
        oco_prices("165:140", "170", None)
