"""GET /api/quote: what a market order would get now, split across venues, without placing it."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.api.deps import Context
from services.api.errors import ApiError
from services.api.responses import JsonResponse
from services.api.routes.orders import validated_order
from shared.quote_cache import NotStreamed, cached_pools
from shared.route_quote import quote_message
from shared.venues.launches import is_listed

router = APIRouter(tags=["quotes"])

#: A query value that is an integer as JSON would write it (ASCII digits, an optional minus).
INTEGER_TEXT = re.compile(r"-?[0-9]{1,18}")
#: When the quote stream has not cached the pair's pools yet (it writes every QUOTE_INTERVAL_MS).
NO_POOLS_RETRY_AFTER_S = 1


@router.get("/api/quote")
async def quote(
    ctx: Context,
    token_in: Annotated[str | None, Query(alias="tokenIn")] = None,
    token_out: Annotated[str | None, Query(alias="tokenOut")] = None,
    amount: Annotated[str | None, Query()] = None,
    slippage_bps: Annotated[str | None, Query(alias="slippageBps")] = None,
) -> JsonResponse:
    """The best route for selling `amount` of tokenIn now (Jupiter's fields): from the pools the quote stream
    cached, so no venue is asked and nothing waits on a simulated latency. Validated as a market order is."""
    body: dict[str, Any] = {"type": "market", "tokenIn": token_in, "tokenOut": token_out, "amount": amount}
    if slippage_bps is not None:
        # A query string is text; the order body's slippageBps is a JSON integer, and text that is one counts.
        body["slippageBps"] = int(slippage_bps) if INTEGER_TEXT.fullmatch(slippage_bps) else slippage_bps
    order = validated_order({name: value for name, value in body.items() if value is not None}, ctx)
    if not is_listed(order.token_in, order.token_out, time.time(), ctx.sim):
        raise ApiError(400, "pair_not_listed", f"no venue has a {order.pair} pool yet")
    try:
        pools = await cached_pools(ctx.redis, order.token_in, order.token_out, ctx.settings.pairs)
    except NotStreamed:
        raise ApiError(
            400, "pair_not_streamed", f"no price stream for {order.pair}: no pool state to quote on"
        ) from None
    if not pools:
        raise ApiError(
            503,
            "no_quotes",
            f"no fresh pool state cached for {order.pair} yet; retry shortly",
            headers={"Retry-After": str(NO_POOLS_RETRY_AFTER_S)},
        )
    return JsonResponse(
        quote_message(order.token_in, order.token_out, order.amount, order.slippage_bps, pools, ctx.sim.epoch)
    )
