"""Submitting orders and reading them back."""

from __future__ import annotations

import hashlib
import json
import time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Header, Query
from loguru import logger
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from services.api import asgi, errors
from services.api.auth import CallerDep, identify_scope
from services.api.deps import ApiContext, Context
from services.api.errors import ApiError, from_validation
from services.api.guards.client_identity import identity
from services.api.responses import DirectResponse, JsonResponse, Response
from shared.domain import idempotency, untrusted
from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.domain.order_types import PRICE_TRIGGERED_TYPES, OrderType
from shared.domain.orders import LIFETIME_CONTEXT_KEY, Order, OrderRequest, accept
from shared.logging import order_logger
from shared.persistence import history
from shared.store.conditional_book import trail_state
from shared.store.order_store import ClaimLost, CreateOutcome, CreateResult, RestingPlace, StaleWrite
from shared.store.placement import placement
from shared.venues.launches import is_listed

router = APIRouter(prefix="/api/orders", tags=["orders"])

#: History filters name tokens as stored (ASCII symbols): "ſol".upper() would otherwise list SOL's orders.
TOKEN_FILTER = r"^[\x21-\x7e]+$"
#: Seconds a client should wait before resubmitting when the execution backlog is over its bound.
OVERLOAD_RETRY_AFTER_S = 2
#: Seconds a client should wait when Redis is near its maxmemory (db-sync trims, retention expires orders).
REDIS_MEMORY_RETRY_AFTER_S = 5
#: How long a submission waits out Redis being away before it is answered 503. A Sentinel failover takes a
#: few seconds after the master dies, and a submission whose write was sent but not acknowledged is sent
#: again until it is: the client gets the outcome, not a 503 that leaves it unsure whether the order exists.
SUBMIT_RIDE_OUT_S = 5.0


def _parse_json(body: bytes) -> Any:
    try:
        # JSON travels as UTF-8 (RFC 8259); given bytes, json.loads would also guess UTF-16 and UTF-32.
        # parse_float keeps "amount": 1.1 exact: a float would turn it into 1.1000000000000000888.
        parsed = json.loads(
            body.decode("utf-8"),
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=untrusted.unique_fields,
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {untrusted.clip(exc, 200)}") from None
    except InvalidOperation:  # 1e9999999999999999999999999999: an exponent no Decimal can hold
        raise ApiError(400, "invalid_json", "a number in the body is out of any decimal's range") from None
    except RecursionError:  # 16 KiB of "[" nests deeper than the parser's stack
        raise ApiError(400, "invalid_json", "the body nests too deeply") from None
    # What parses may still be too deep for the encoders the body hash and the logs use after it.
    if not untrusted.json_depth_within(parsed):
        raise ApiError(400, "invalid_json", f"the body nests more than {untrusted.MAX_JSON_DEPTH} levels deep")
    return parsed


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if (problem := idempotency.client_key_problem(key)) is not None:
        raise ApiError(400, "invalid_idempotency_key", problem)
    return key


def _body_hash(body: Any) -> str:
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS, default=str)
    except TypeError:  # an integer beyond 64 bits: the standard encoder takes it (same body, same bytes)
        canonical = json.dumps(body, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


_ORDER_EXAMPLES = {  # shown in /docs, and the fuzz test starts from them
    "market": {"value": {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5", "slippageBps": 50}},
    "limit": {"value": {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "2", "limitPrice": "155"}},
    "sniper": {
        "value": {
            "type": "sniper",
            "tokenIn": "SOL",
            "tokenOut": "WIF",
            "amount": "0.5",
            "trigger": {"kind": "listing"},
        }
    },
    "stop": {"value": {"type": "stop", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "2", "stopPrice": "140"}},
    "trailing_stop": {
        "value": {"type": "trailing_stop", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "2", "trailBps": 300}
    },
    "oco": {
        "value": {
            "type": "oco",
            "tokenIn": "SOL",
            "tokenOut": "USDC",
            "amount": "2",
            "takeProfitPrice": "165",
            "stopPrice": "140",
        }
    },
}
_ORDER_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": OrderRequest.model_json_schema(by_alias=True),
                "examples": _ORDER_EXAMPLES,
            }
        },
    }
}


async def serve_submit(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /api/orders/execute, served as plain ASGI (the guard in front has already applied the client's
    limits). FastAPI declares the same operation below, for the OpenAPI document; per order it would cost
    its dependency solving and middleware stack, which were a fifth of the API's CPU (docs/benchmarks.md)."""
    ctx: ApiContext = scope["app"].state.context
    try:
        content, headers = await _submit(ctx, scope, receive)
    except asgi.ClientGone:
        return
    except Exception as exc:  # the same answers as FastAPI's handlers give: errors.response_for
        await errors.response_for(exc, "POST", scope["path"])(scope, receive, send)
        return
    await asgi.send_json(send, 200, content, headers)


async def _submit(ctx: ApiContext, scope: Scope, receive: Receive) -> tuple[bytes, dict[str, str]]:
    caller = await identify_scope(scope)
    key = _check_idempotency_key(asgi.header(scope, b"idempotency-key"))
    content_type = asgi.header(scope, b"content-type") or ""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the order as Content-Type: application/json")
    body = _parse_json(await asgi.read_body(receive))  # at most MAX_BODY_BYTES: the guard sees to that
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    body_hash = _body_hash(body)
    try:
        order = validated_order(body, ctx, idempotency_key=key, owner=caller.owner)
        result = await _create(ctx, order, body_hash, rest_owner=identity(scope, caller.owner))
    except ApiError as refusal:
        # A retry of an accepted order gets its id even when its body would no longer pass (an expiresAt now
        # past, a pair delisted). Only a refused body needs this look-up: the create script checks the key.
        earlier = None
        if key is not None and refusal.status == 400:
            earlier = await ctx.store.remembered(idempotency.scope(caller.owner, key), body_hash)
        if earlier is None:
            ctx.metrics.orders_rejected.labels(refusal.code).inc()
            raise
        return await _answer(ctx, earlier, None)
    return await _answer(ctx, result, order)


@router.post(
    "/execute",
    openapi_extra=_ORDER_BODY_SCHEMA,
    responses={400: {"description": "invalid order"}, 409: {"description": "Idempotency-Key reused"}},
)
async def submit_order(
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Submit an order. It is durably accepted (in Redis, with its execution message or resting place)
    before the 200."""
    # The app serves this operation with `serve_submit` before FastAPI sees the request (routes/direct.py);
    # this declaration gives the document its header, body and answers, and should FastAPI ever route a
    # request here, the very same code answers it.
    return DirectResponse(serve_submit)


def validated_order(
    body: dict[str, Any], ctx: ApiContext, *, idempotency_key: str | None = None, owner: str | None = None
) -> Order:
    """`body` as the order it would be accepted as (nothing is placed yet); a 400 with the submission's codes
    if it is not one."""
    lifetime_s = ctx.settings.resting_max_lifetime_s
    return accept(
        _validated(body, lifetime_s),
        idempotency_key=idempotency_key,
        owner=owner,
        resting_max_lifetime_s=lifetime_s,
        partitions=ctx.settings.partitions,
    )


def _validated(body: dict[str, Any], resting_max_lifetime_s: float) -> OrderRequest:
    try:
        return OrderRequest.model_validate(body, context={LIFETIME_CONTEXT_KEY: resting_max_lifetime_s})
    except ValidationError as exc:
        raise from_validation(exc) from None


async def _answer(ctx: ApiContext, result: CreateResult, order: Order | None) -> tuple[bytes, dict[str, str]]:
    """The 200 to a submission (body, extra headers): `order` is the one just accepted, None for a retry."""
    if result.outcome is CreateOutcome.OVERLOADED:
        ctx.metrics.orders_rejected.labels("overloaded").inc()
        raise ApiError(
            503,
            "overloaded",
            "the execution queue is full; retry later",
            headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_S)},
        )
    if result.outcome is CreateOutcome.KEY_CONFLICT:
        raise ApiError(409, "idempotency_conflict", "this Idempotency-Key was used with a different body")
    if result.outcome is CreateOutcome.TOO_MANY_RESTING:
        ctx.metrics.orders_rejected.labels("too_many_resting_orders").inc()
        cap = ctx.settings.max_resting_per_owner
        raise ApiError(
            409,
            "too_many_resting_orders",
            f"{cap} of your resting (limit, sniper, conditional) orders are already waiting; cancel one or wait"
            " for one to end",
        )
    headers = {}
    status, order_type = OrderStatus.PENDING.value, order.type.value if order else OrderType.MARKET.value
    if result.outcome is CreateOutcome.REPLAYED:
        ctx.metrics.idempotent_replays.inc()
        headers["Idempotent-Replayed"] = "true"
        state = await ctx.store.load(result.order_id)
        if state is not None:
            status, order_type = state.status.value, state.order.type.value
        elif order is None:  # past its retention in Redis: PostgreSQL has it
            archived = await history.get_order(ctx.db, result.order_id)
            status, order_type = (archived["status"], archived["type"]) if archived else (status, order_type)
    else:
        assert order is not None  # only a replay is answered without the order just accepted
        ctx.metrics.orders_accepted.labels(order.type.value).inc()
        # A keyword argument lands in the line's extra, as bind() would put it, without building a logger.
        logger.info(
            "accepted {} {} {} → {}",
            order.type.value,
            order.amount,
            order.token_in,
            order.token_out,
            order_id=order.order_id,
        )
    order_id = str(result.order_id)
    content = orjson.dumps(
        {"success": True, "orderId": order_id, "status": status, "type": order_type, "wsUrl": f"/ws/orders/{order_id}"}
    )
    return content, headers


async def _create(ctx: ApiContext, order: Order, body_hash: str, rest_owner: str) -> CreateResult:
    """A market order is enqueued for execution; limit and sniper orders rest (`waiting`) until triggered,
    counted against `rest_owner`'s resting cap."""
    if await ctx.memory.high():
        # Before Redis refuses writes (maxmemory), including those of orders already accepted: they need it more.
        raise ApiError(
            503,
            "redis_memory_high",
            "the engine's Redis is nearly full; retry later",
            headers={"Retry-After": str(REDIS_MEMORY_RETRY_AFTER_S)},
        )
    if order.type is not OrderType.SNIPER and not is_listed(order.token_in, order.token_out, time.time(), ctx.sim):
        raise ApiError(400, "pair_not_listed", f"no venue has a {order.pair} pool yet; a sniper order can wait for it")
    if order.type in PRICE_TRIGGERED_TYPES and (order.token_in, order.token_out) not in ctx.settings.pairs:
        raise ApiError(400, "pair_not_streamed", f"no price stream for {order.pair}: the order could never trigger")
    plan = placement(order)
    return await ctx.store.create(
        order,
        plan.first_event,
        body_hash=body_hash,
        message=plan.message,
        resting=plan.resting,
        max_queue_depth=ctx.settings.max_queue_depth,
        rest_owner=rest_owner,
        max_resting=ctx.settings.max_resting_per_owner,
        ride_out_s=SUBMIT_RIDE_OUT_S,
    )


@router.get("", summary="Order history (PostgreSQL), newest first")
@router.get("/history", summary="Order history (alias)")
async def list_orders(
    ctx: Context,
    caller: CallerDep,
    limit: Annotated[untrusted.AsciiInt, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
    status: OrderStatus | None = None,
    type: OrderType | None = None,
    user_id: Annotated[str | None, Query(alias="userId", max_length=64)] = None,
    token_in: Annotated[str | None, Query(alias="tokenIn", max_length=64, pattern=TOKEN_FILTER)] = None,
    token_out: Annotated[str | None, Query(alias="tokenOut", max_length=64, pattern=TOKEN_FILTER)] = None,
) -> JsonResponse:
    try:
        orders, next_cursor = await history.list_orders(
            ctx.db,
            limit=limit,
            cursor=cursor,
            status=status.value if status else None,
            type=type.value if type else None,
            user_id=user_id,
            token_in=token_in.upper() if token_in else None,
            token_out=token_out.upper() if token_out else None,
            owner=caller.scope,
        )
    except ValueError as exc:
        raise ApiError(400, "invalid_cursor", untrusted.clip(exc, 200)) from None
    return JsonResponse({"orders": orders, "nextCursor": next_cursor, "count": len(orders)})


@router.get("/{order_id}")
async def get_order(order_id: UUID, ctx: Context, caller: CallerDep) -> JsonResponse:
    """The order's current state with every lifecycle event so far, in seq order."""
    state = await ctx.store.load(order_id)
    if state is not None and caller.may_see(state.order.owner):
        view = state.to_view()
        if state.order.type is OrderType.TRAILING_STOP and state.status is OrderStatus.WAITING:
            view |= (await trail_state(ctx.store.redis, state)).view()  # armed, highWaterMark, stopLevel
        view["events"] = [orjson.loads(raw) for raw in await ctx.store.events(order_id)]
        return JsonResponse(view)
    archived = None if state is not None else await history.get_order(ctx.db, order_id, owner=caller.scope)
    if archived is None:
        raise ApiError(404, "order_not_found", f"no order {order_id}")
    return JsonResponse(archived)


@router.delete("/{order_id}", responses={404: {"description": "unknown order"}, 409: {"description": "not resting"}})
async def cancel_order(order_id: UUID, ctx: Context, caller: CallerDep) -> JsonResponse:
    """Cancel a resting (waiting) limit, sniper or conditional order. Exactly one of a cancel and a racing trigger
    wins."""
    state = await ctx.store.load(order_id)
    if state is not None and not caller.may_see(state.order.owner):
        raise ApiError(404, "order_not_found", f"no order {order_id}")
    if state is None:
        if await history.get_order(ctx.db, order_id, owner=caller.scope) is None:
            raise ApiError(404, "order_not_found", f"no order {order_id}")
        raise ApiError(409, "not_cancellable", f"order {order_id} has already ended")
    place = RestingPlace.from_fields(state.fields)
    if state.status is not OrderStatus.WAITING or place is None:
        raise ApiError(409, "not_cancellable", f"order {order_id} is {state.status.value}, not resting")
    event = OrderEvent(
        order_id,
        state.seq + 1,
        OrderStatus.CANCELLED,
        state.order.type.value,
        client_order_id=state.order.client_order_id,
    )
    try:
        await ctx.store.append(state, event, claim=place)
    except (ClaimLost, StaleWrite):
        latest = await ctx.store.load(order_id)
        status = latest.status.value if latest else "gone"
        raise ApiError(409, "not_cancellable", f"order {order_id} was triggered first (now {status})") from None
    ctx.metrics.outcomes.ended(state.order, event)
    order_logger(order_id).info("cancelled")
    return JsonResponse({"success": True, "orderId": str(order_id), "status": OrderStatus.CANCELLED.value})
