"""Operator routes: the execution queue's dead letters (see shared/execution/dead_letters.py for what a
replay does). An admin API key only, whatever else is open: every route of this router is behind
`require_admin`, so with AUTH_ENABLED off they all answer 403 `admin_disabled` (operators with a shell on the
host use `order-engine dlq`, which talks to Redis directly)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from loguru import logger

from services.api.auth import AdminDep, Caller, require_admin
from services.api.deps import Context
from services.api.errors import ApiError
from services.api.responses import JsonResponse
from shared.domain.untrusted import AsciiFloat, AsciiInt
from shared.execution.dead_letters import (
    DEFAULT_LIST_LIMIT,
    DEFAULT_REPLAY_BATCH,
    MAX_BATCH,
    DeadLetterNotFound,
    DeadLetters,
    ReplayContended,
)
from shared.execution.replay_policy import NotReplayable
from shared.logging import order_logger
from shared.venues.ledger import RedisLedger

#: The guard is on the router, not left to each route: a route added here cannot forget it. It runs before
#: the route's own parameters are checked, so a caller who may not administer learns nothing from a 400.
router = APIRouter(
    prefix="/api/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={
        401: {"description": "no API key, or an unknown one (AUTH_ENABLED on)"},
        403: {"description": "not an admin key (`forbidden`), or AUTH_ENABLED off (`admin_disabled`)"},
    },
)

#: Seconds an operator should wait before retrying a replay that lost to concurrent changes of the order.
CONTENDED_RETRY_AFTER_S = 1


#: Ten years: anything older than the oldest possible dead letter (finite, so the cut-off time is a date).
MAX_PURGE_AGE_S = 10 * 365 * 86_400


async def _dead_letters(ctx: Context) -> DeadLetters:
    return DeadLetters(ctx.redis, ctx.store, RedisLedger(ctx.redis))


DeadLettersDep = Annotated[DeadLetters, Depends(_dead_letters)]


def _who(caller: Caller) -> str:
    """The caller as an audit line names it: the key's public id and name, never the key."""
    assert caller.key is not None  # require_admin let no anonymous caller through
    return f"key {caller.key.key_id} ({caller.key.name})"


def _not_found(order_id: UUID) -> ApiError:
    return ApiError(404, "dead_letter_not_found", f"no dead letter for order {order_id}")


@router.get("/dlq", summary="Dead letters, newest first")
async def list_dead_letters(
    dead_letters: DeadLettersDep,
    limit: Annotated[AsciiInt, Query(ge=1, le=MAX_BATCH)] = DEFAULT_LIST_LIMIT,
) -> JsonResponse:
    rows = await dead_letters.list(limit)
    return JsonResponse({"deadLetters": rows, "count": len(rows), "total": await dead_letters.count()})


@router.get("/dlq/{order_id}", summary="One order's dead letters, state and events")
async def show_dead_letter(order_id: UUID, dead_letters: DeadLettersDep) -> JsonResponse:
    try:
        return JsonResponse(await dead_letters.show(order_id))
    except DeadLetterNotFound:
        raise _not_found(order_id) from None


@router.post(
    "/dlq/replay",
    summary="Replay the orders of the oldest dead letters (a bounded batch)",
)
async def replay_dead_letters(
    caller: AdminDep,
    dead_letters: DeadLettersDep,
    limit: Annotated[AsciiInt, Query(ge=1, le=MAX_BATCH)] = DEFAULT_REPLAY_BATCH,
) -> JsonResponse:
    logger.info("replay of up to {} dead letters requested by {}", limit, _who(caller))
    items = [item.to_view() for item in await dead_letters.replay_all(limit)]
    refused = sum(not item["success"] for item in items)
    return JsonResponse(
        {"success": refused == 0, "replayed": len(items) - refused, "refused": refused, "results": items}
    )


@router.post(
    "/dlq/{order_id}/replay",
    summary="Replay one order's dead letter (idempotent)",
    responses={404: {"description": "no dead letter"}, 409: {"description": "not replayable"}},
)
async def replay_dead_letter(order_id: UUID, caller: AdminDep, dead_letters: DeadLettersDep) -> JsonResponse:
    order_logger(order_id).info("dead-letter replay requested by {}", _who(caller))
    try:
        result = await dead_letters.replay(order_id)
    except DeadLetterNotFound:
        raise _not_found(order_id) from None
    except NotReplayable as exc:
        raise ApiError(409, exc.code, exc.message) from None
    except ReplayContended as exc:
        raise ApiError(503, "contended", str(exc), headers={"Retry-After": str(CONTENDED_RETRY_AFTER_S)}) from None
    return JsonResponse({"success": True, **result.to_view()})


@router.delete("/dlq/{order_id}", summary="Drop one order's dead letters without replaying them")
async def purge_dead_letter(order_id: UUID, caller: AdminDep, dead_letters: DeadLettersDep) -> JsonResponse:
    order_logger(order_id).info("dead-letter purge requested by {}", _who(caller))
    try:
        purged = await dead_letters.purge_order(order_id)
    except DeadLetterNotFound:
        raise _not_found(order_id) from None
    return JsonResponse({"success": True, "orderId": str(order_id), "purged": purged})


@router.delete("/dlq", summary="Drop dead letters older than olderThanS seconds")
async def purge_dead_letters(
    caller: AdminDep,
    dead_letters: DeadLettersDep,
    older_than_s: Annotated[AsciiFloat, Query(alias="olderThanS", ge=0, le=MAX_PURGE_AGE_S)],
) -> JsonResponse:
    logger.info("purge of dead letters older than {}s requested by {}", older_than_s, _who(caller))
    return JsonResponse({"success": True, "purged": await dead_letters.purge_older_than(older_than_s)})
