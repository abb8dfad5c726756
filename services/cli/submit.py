"""`order-engine submit`: the contract's request body from the command's options, checked here, placed through
the API, then followed live like `watch` does.

The check uses the API's own request model (shared/domain/orders.py), so a typo gets the API's message
without a round trip; the API stays the authority (pairs that are not listed or not streamed,
Idempotency-Key reuse, limits, keys), and its refusal is shown as it gave it."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from services.cli.api_client import ApiClient, ApiKeyOption, ApiUrlOption, run_api_command
from services.cli.errors import CliError, ExitCode
from services.cli.follow import Outcome
from services.cli.output import print_json_line
from services.cli.parsing import parse_duration_s
from services.cli.watch import TimeoutOption, finish, headline, show_lifecycle
from shared.domain import idempotency
from shared.domain.conditional import MAX_TRAIL_BPS
from shared.domain.events import iso_utc
from shared.domain.order_types import OrderType  # without pydantic: only check_order loads the request model

TokenInArgument = Annotated[str, typer.Argument(help="Token to sell: a symbol (SOL, USDC, …) or a mint address.")]
TokenOutArgument = Annotated[str, typer.Argument(help="Token to buy.")]
AmountArgument = Annotated[str, typer.Argument(help="How much TOKEN_IN to sell, as a decimal (1.5).")]
OrderTypeOption = Annotated[
    OrderType | None,
    typer.Option(
        "--type",
        case_sensitive=False,
        show_default=False,
        help="market, limit, sniper, stop, trailing_stop or oco. Default: from the options: limit with "
        "--limit-price, sniper with --listing or --min-liquidity, stop with --stop, oco with --take-profit and "
        "--stop, trailing_stop with --trail; else market.",
    ),
]
LimitPriceOption = Annotated[
    str | None,
    typer.Option(help="Limit order: sell once the BEST price of TOKEN_IN in TOKEN_OUT reaches this."),
]
ListingFlag = Annotated[bool, typer.Option("--listing", help="Sniper order: fire when a pool for the pair appears.")]
MinLiquidityOption = Annotated[
    str | None, typer.Option(help="Sniper order: fire when a pool holds this much TOKEN_OUT.")
]
StopPriceOption = Annotated[
    str | None,
    typer.Option(
        "--stop",
        metavar="PRICE",
        help="Stop order (stopPrice): sell once the BEST price falls to this or below; with --take-profit, the "
        "stop side of an OCO order.",
    ),
]
TakeProfitOption = Annotated[
    str | None,
    typer.Option(
        "--take-profit",
        metavar="PRICE",
        help="OCO order (takeProfitPrice), with --stop: sell once BEST rises to this or above, or falls to the "
        "stop, whichever comes first. Must be above the stop.",
    ),
]
OcoOption = Annotated[
    str | None,
    typer.Option(
        "--oco",
        metavar="TAKE_PROFIT:STOP",
        help="OCO order in one option: --oco 165:140 is --take-profit 165 --stop 140.",
    ),
]
TrailOption = Annotated[
    int | None,
    typer.Option(
        "--trail",
        metavar="BPS",
        help=f"Trailing stop (trailBps, 1-{MAX_TRAIL_BPS}): sell once BEST falls this many basis points below "
        "its highest price since the order was armed.",
    ),
]
ActivationOption = Annotated[
    str | None,
    typer.Option(
        "--activation",
        metavar="PRICE",
        help="Trailing stop (activationPrice): arm it only once BEST reaches this; default: at the next tick.",
    ),
]
SlippageBpsOption = Annotated[
    int | None, typer.Option(help="Largest shortfall from the quote, in basis points (0-5000; API: 50).")
]
SlippageOption = Annotated[
    str | None, typer.Option(help="The same as a fraction (0.01 = 100 bps); must agree with --slippage-bps.")
]
ExpiresAtOption = Annotated[
    str | None,
    typer.Option(help="Resting orders: expire at this RFC 3339 time (at most 7 days away by default)."),
]
ExpiresInOption = Annotated[
    str | None, typer.Option(help="Resting orders: expire this long from now (90s, 15m, 24h, 7d).")
]
UserIdOption = Annotated[str | None, typer.Option(help="Owner tag (userId, ≤ 64 characters).")]
ClientOrderIdOption = Annotated[
    str | None, typer.Option(help="Your own id for the order (≤ 64), echoed in every event.")
]
IdempotencyKeyOption = Annotated[
    str | None,
    typer.Option(help="Idempotency-Key: re-running with the same key and order returns the same order."),
]
NoWaitFlag = Annotated[bool, typer.Option("--no-wait", help="Print the order id and return at once.")]
NoCheckFlag = Annotated[bool, typer.Option("--no-check", help="Send the order without checking it here first.")]
SubmitJsonFlag = Annotated[
    bool, typer.Option("--json", help="NDJSON: an `accepted` line, then every event as the API sends it.")
]


#: The options that name an order type by being given, and the type each names. `--stop` with `--take-profit`
#: is one OCO order (its stop side), so the two do not conflict.
TYPE_OPTIONS = (
    ("--limit-price", OrderType.LIMIT),
    ("--listing", OrderType.SNIPER),
    ("--min-liquidity", OrderType.SNIPER),
    ("--stop", OrderType.STOP),
    ("--take-profit", OrderType.OCO),
    ("--trail", OrderType.TRAILING_STOP),
    ("--activation", OrderType.TRAILING_STOP),
)


def implied_type(given: Collection[str]) -> OrderType:
    """The order type the `given` options of TYPE_OPTIONS make (market: none); a usage error when they make
    more than one."""
    types = {order_type for option, order_type in TYPE_OPTIONS if option in given}
    if OrderType.OCO in types:
        types.discard(OrderType.STOP)
    if len(types) > 1:
        options = [option for option, _ in TYPE_OPTIONS if option in given]
        names = ", ".join(options[:-1]) + f" and {options[-1]}"
        kinds = ", ".join(sorted(types))
        raise typer.BadParameter(f"{names} make different order types ({kinds}); give the options of one type")
    return next(iter(types), OrderType.MARKET)


def oco_prices(oco: str | None, take_profit: str | None, stop: str | None) -> tuple[str | None, str | None]:
    """(take-profit, stop) from `--oco TP:STOP`, or the two options as given; a usage error for both spellings."""
    if oco is None:
        return take_profit, stop
    if take_profit is not None or stop is not None:
        raise typer.BadParameter("give --oco TAKE_PROFIT:STOP or --take-profit and --stop, not both")
    take_profit, colon, stop = oco.partition(":")
    if not colon or not take_profit.strip() or not stop.strip():
        raise typer.BadParameter(f"--oco takes TAKE_PROFIT:STOP, e.g. 165:140, not {oco!r}")
    return take_profit.strip(), stop.strip()


def order_body(
    token_in: str,
    token_out: str,
    amount: str,
    *,
    order_type: OrderType | None = None,
    limit_price: str | None = None,
    listing: bool = False,
    min_liquidity: str | None = None,
    stop_price: str | None = None,
    take_profit_price: str | None = None,
    trail_bps: int | None = None,
    activation_price: str | None = None,
    slippage_bps: int | None = None,
    slippage: str | None = None,
    expires_at: str | None = None,
    user_id: str | None = None,
    client_order_id: str | None = None,
) -> dict[str, Any]:
    """The contract's request body for these options; the type follows from them unless given. Options of two
    types are a usage error; a --type that disagrees with the options is left to check_order (the API's rule)."""
    if listing and min_liquidity is not None:
        raise typer.BadParameter("a sniper order waits for --listing or --min-liquidity, not both")
    given = {
        "--limit-price": limit_price,
        "--listing": listing or None,
        "--min-liquidity": min_liquidity,
        "--stop": stop_price,
        "--take-profit": take_profit_price,
        "--trail": trail_bps,
        "--activation": activation_price,
    }
    implied = implied_type([option for option, value in given.items() if value is not None])
    order_type = implied if order_type is None else order_type
    trigger = {"kind": "listing"} if listing else None
    if min_liquidity is not None:
        trigger = {"kind": "liquidity", "minLiquidity": min_liquidity}
    fields = {
        "type": order_type.value,
        "tokenIn": token_in,
        "tokenOut": token_out,
        "amount": amount,
        "slippageBps": slippage_bps,
        "slippage": slippage,
        "limitPrice": limit_price,
        "trigger": trigger,
        "stopPrice": stop_price,
        "takeProfitPrice": take_profit_price,
        "trailBps": trail_bps,
        "activationPrice": activation_price,
        "expiresAt": expires_at,
        "userId": user_id,
        "clientOrderId": client_order_id,
    }
    return {name: value for name, value in fields.items() if value is not None}


def expiry(expires_at: str | None, expires_in: str | None) -> str | None:
    if expires_at is not None and expires_in is not None:
        raise typer.BadParameter("give --expires-at or --expires-in, not both")
    if expires_in is not None:
        seconds = parse_duration_s(expires_in)
        return iso_utc(datetime.now(UTC) + timedelta(seconds=seconds))
    return expires_at


def check_order(body: dict[str, Any], idempotency_key: str | None) -> None:
    """The API's own checks, here (the same model, the same messages); raises CliError like its 400."""
    problem = None if idempotency_key is None else idempotency.client_key_problem(idempotency_key)
    if problem is not None:
        raise _invalid("invalid_idempotency_key", problem)
    from pydantic import ValidationError

    from shared.domain.orders import OrderRequest  # the API's model (and pydantic): only submit needs them

    try:
        OrderRequest.model_validate(body)
    except ValidationError as exc:
        details = [
            {
                "field": ".".join(str(part) for part in error.get("loc", ())) or None,
                "code": error.get("type"),
                "message": error.get("msg"),
            }
            for error in exc.errors()
        ]
        code = details[0]["code"] if len(details) == 1 and details[0]["code"] else "validation_error"
        message = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else str(d["message"]) for d in details)
        raise _invalid(code, message or "invalid order", details) from None


def _invalid(code: str, message: str, details: list[dict[str, Any]] | None = None) -> CliError:
    return CliError(
        f"invalid order: {message} ({code}; checked here, not sent: --no-check sends it to the API as it is)",
        ExitCode.FAILED,
        code,
        details=details,
    )


def place(client: ApiClient, body: dict[str, Any], idempotency_key: str | None) -> tuple[dict[str, Any], bool]:
    """The API's answer to the order, and whether the Idempotency-Key had already placed it."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
    response = client.post("/api/orders/execute", body, headers=headers, what="the API refused the order")
    accepted: dict[str, Any] = response.json()
    return accepted, response.headers.get("Idempotent-Replayed") == "true"


def announce(order: dict[str, Any], accepted: dict[str, Any], replayed: bool, *, as_json: bool, no_wait: bool) -> None:
    """The first line: an `accepted` NDJSON line, the bare order id (--no-wait), or what was accepted."""
    if as_json:
        print_json_line(
            {**accepted, "type": "accepted", "orderType": accepted.get("type"), "idempotentReplayed": replayed}
        )
    elif no_wait:
        typer.echo(accepted["orderId"])
        if replayed:
            typer.echo("this Idempotency-Key was used before: that is the order it placed", err=True)
    else:
        note = " before (this Idempotency-Key placed it)" if replayed else ""
        typer.echo(f"order {accepted['orderId']} accepted{note}: {headline(order)}")


def submit(
    token_in: TokenInArgument,
    token_out: TokenOutArgument,
    amount: AmountArgument,
    order_type: OrderTypeOption = None,
    limit_price: LimitPriceOption = None,
    listing: ListingFlag = False,
    min_liquidity: MinLiquidityOption = None,
    stop_price: StopPriceOption = None,
    take_profit_price: TakeProfitOption = None,
    oco: OcoOption = None,
    trail_bps: TrailOption = None,
    activation_price: ActivationOption = None,
    slippage_bps: SlippageBpsOption = None,
    slippage: SlippageOption = None,
    expires_at: ExpiresAtOption = None,
    expires_in: ExpiresInOption = None,
    user_id: UserIdOption = None,
    client_order_id: ClientOrderIdOption = None,
    idempotency_key: IdempotencyKeyOption = None,
    no_wait: NoWaitFlag = False,
    no_check: NoCheckFlag = False,
    timeout: TimeoutOption = None,
    api: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: SubmitJsonFlag = False,
) -> None:
    """Submit an order, then follow it live until it ends.

    Market by default; limit with --limit-price; sniper with --listing or --min-liquidity; stop with --stop;
    OCO with --take-profit and --stop (or --oco TAKE_PROFIT:STOP); trailing stop with --trail (and --activation).

    Exit 0 when it is confirmed; 6 failed, 7 cancelled, 8 expired; 1 refused (by the API, or checked here).
    """
    take_profit_price, stop_price = oco_prices(oco, take_profit_price, stop_price)
    body = order_body(
        token_in,
        token_out,
        amount,
        order_type=order_type,
        limit_price=limit_price,
        listing=listing,
        min_liquidity=min_liquidity,
        stop_price=stop_price,
        take_profit_price=take_profit_price,
        trail_bps=trail_bps,
        activation_price=activation_price,
        slippage_bps=slippage_bps,
        slippage=slippage,
        expires_at=expiry(expires_at, expires_in),
        user_id=user_id,
        client_order_id=client_order_id,
    )

    def work(client: ApiClient) -> tuple[dict[str, Any], Outcome | None]:
        if not no_check:
            check_order(body, idempotency_key)
        accepted, replayed = place(client, body, idempotency_key)
        order = {**body, **accepted}
        announce(order, accepted, replayed, as_json=as_json, no_wait=no_wait)
        if no_wait:
            return order, None
        return order, show_lifecycle(client, order, as_json=as_json, timeout_s=timeout)

    order, outcome = run_api_command(as_json, api, api_key, work, one_line=True)
    if outcome is not None:
        finish(order, outcome, as_json)
