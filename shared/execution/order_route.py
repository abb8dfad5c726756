"""An order's route as its routing event tells it and as its hash remembers it, pure.

The routing event carries the route for clients (Jupiter's `routePlan`, `priceImpactPct`,
`otherAmountThreshold`, `expiresAt`); the order hash keeps what a worker resuming the order needs to send the
same transaction: the legs largest first with their quoted outputs, the least total accepted, when the quotes
were priced, and how many transactions already expired unlanded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from shared.domain import tokens
from shared.domain.events import iso_utc
from shared.domain.slippage import min_amount_out
from shared.route_quote import QUOTE_VALID_S
from shared.routing import RoutedOrder
from shared.store.order_store import OrderState
from shared.venues.base import Dex, SwapLeg


def minimum_out(state: OrderState, quoted_out: Decimal) -> Decimal:
    """The least total output the order's transaction accepts: a triggered order measures slippage from the price
    at trigger time, a market order from its routing quote."""
    reference = state.fields.get("referencePrice")
    basis = state.order.amount * Decimal(reference) if reference else quoted_out
    return min_amount_out(basis, state.order.slippage_bps, tokens.TOKENS[state.order.token_out].decimals)


def routing_fields(
    state: OrderState,
    routed: RoutedOrder,
    *,
    requote: str | None = None,
    expired_tx_hash: str | None = None,
) -> tuple[dict[str, Any], dict[str, object]]:
    """The routing event's extra fields, and the order-hash fields it remembers."""
    least = minimum_out(state, routed.quoted_out)
    extra: dict[str, Any] = {
        "routePlan": routed.plan(),
        "priceImpactPct": str(routed.price_impact_pct()),
        "otherAmountThreshold": str(least),
        "expiresAt": iso_utc(datetime.fromtimestamp(routed.quoted_at + QUOTE_VALID_S, UTC)),
    }
    if requote:
        extra |= {"requoted": True, "requoteReason": requote}
    remember: dict[str, object] = {
        "quotedOut": routed.quoted_out,
        "minOut": least,
        "route": [[leg.venue.value, str(leg.amount_in), str(leg.amount_out)] for leg in routed.ranked_legs],
        "quotedAt": repr(routed.quoted_at),
    }
    if expired_tx_hash is not None:
        extra["expiredTxHash"] = expired_tx_hash
        remember["resends"] = resends(state) + 1
    return extra, remember


def quote_expired(state: OrderState, now: float) -> bool:
    quoted_at = state.fields.get("quotedAt")
    return quoted_at is not None and now > float(quoted_at) + QUOTE_VALID_S


def remembered_route(state: OrderState) -> list[list[str]]:
    """The legs routing chose, largest first, as [dex, amountIn, quoted amountOut]; an order routed before
    routes were remembered went whole to its `dex`."""
    raw = state.fields.get("route")
    if raw is None:
        return [[state.fields["dex"], str(state.order.amount), state.fields.get("quotedOut") or "0"]]
    route: list[list[str]] = orjson.loads(raw)
    return route


def route_legs(state: OrderState) -> tuple[SwapLeg, ...]:
    return tuple(SwapLeg(Dex(dex), Decimal(amount)) for dex, amount, _ in remembered_route(state))


def quoted_outputs(state: OrderState) -> dict[Dex, Decimal]:
    return {Dex(dex): Decimal(out) for dex, _, out in remembered_route(state)}


def route_shape(state: OrderState) -> str:
    return "split" if len(remembered_route(state)) > 1 else "single"


def resends(state: OrderState) -> int:
    """Transactions of the order that expired unlanded and were replaced."""
    return int(state.fields.get("resends") or 0)
