"""WebSockets: one order's lifecycle (two paths, same messages) and every event of one owner.

Served as plain ASGI endpoints (routes/direct.py), not FastAPI routes: a socket may stay open for hours,
and all that it keeps alive meanwhile is this module's handler, waiting for the client to say something.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Coroutine
from typing import Any, TypeVar
from uuid import UUID

import orjson
from loguru import logger
from starlette.datastructures import QueryParams
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from services.api.auth import Caller, identify_websocket
from services.api.deps import ApiContext
from services.api.errors import BACKEND_ERRORS, ApiError
from shared.domain import untrusted
from shared.domain.orders import PRINTABLE_ID
from shared.event_feed import follow_order
from shared.persistence import history

T = TypeVar("T")

CLOSE_NORMAL = 1000
CLOSE_INTERNAL_ERROR = 1011
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
#: A /ws?userId= reader that fell more than WS_USER_OUTBOX_MAX events behind (it does not read).
CLOSE_TOO_SLOW = 4008
#: `?after=` is a seq: nine digits are more events than any order has.
MAX_AFTER_DIGITS = 9
#: How long a cancelled task may take to end before it is cancelled again.
CANCEL_RETRY_S = 0.05


def _context(websocket: WebSocket) -> ApiContext:
    context: ApiContext = websocket.app.state.context
    return context


async def _refuse(websocket: WebSocket, code: int, error: str, message: str) -> None:
    await websocket.send_bytes(orjson.dumps({"type": "error", "error": error, "message": message}))
    await websocket.close(code)


async def _authenticate(websocket: WebSocket) -> Caller | None:
    """The caller, or None after refusing the socket (4401) when keys are enabled and it has no valid one
    (in its headers, `?apiKey=`, or its first message: auth.identify_websocket)."""
    try:
        return await identify_websocket(websocket)
    except ApiError as exc:
        await _refuse(websocket, CLOSE_UNAUTHORIZED, exc.code, exc.message)
        return None


async def _visible(ctx: ApiContext, caller: Caller, order_id: UUID) -> bool:
    """Whether a key that is not an admin may follow this order (another key's order looks unknown)."""
    if caller.scope is None:
        return True
    state = await ctx.store.load(order_id)
    if state is not None:
        return caller.may_see(state.order.owner)
    return await history.get_order(ctx.db, order_id, owner=caller.scope) is not None


async def _until_client_leaves(websocket: WebSocket) -> None:
    """Read (and ignore) whatever the client sends, to notice when it goes away."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended, cancelling again if it must: on Python 3.11,
    `asyncio.wait_for` (redis-py awaits one in every command) swallows a cancel that lands just as its inner
    call completes, and a follower that missed its cancel would follow a quiet order forever."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_RETRY_S)
    with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
        task.result()


async def _race_client(websocket: WebSocket, work: Coroutine[Any, Any, T]) -> tuple[bool, T | None]:
    """Run `work` until it ends or the client disconnects: (True, its result) or (False, None)."""
    worker = asyncio.create_task(work)
    watcher = asyncio.create_task(_until_client_leaves(websocket))
    done, pending = await asyncio.wait({worker, watcher}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        await _cancel(task)
    if worker in done:
        return True, worker.result()
    return False, None


async def stream_order(websocket: WebSocket, raw_order_id: str | None, raw_after: str | None) -> None:
    ctx = _context(websocket)
    await websocket.accept()
    ctx.metrics.websockets.labels("order").inc()
    try:
        try:
            order_id = untrusted.parse_uuid(raw_order_id or "")
        except ValueError:
            await _refuse(websocket, CLOSE_BAD_REQUEST, "invalid_order_id", "orderId must be a UUID")
            return
        # ASCII digits only: str.isdigit() is also true of "١" (int reads it as 1) and "²" (int refuses it).
        after = 0 if raw_after is None else untrusted.ascii_uint(raw_after, MAX_AFTER_DIGITS)
        if after is None:
            await _refuse(websocket, CLOSE_BAD_REQUEST, "invalid_after", "after must be a non-negative integer")
            return
        caller = await _authenticate(websocket)
        if caller is None:
            return
        if not await _visible(ctx, caller, order_id):
            await _refuse(websocket, CLOSE_NOT_FOUND, "order_not_found", f"no order {order_id}")
            return

        async def follow() -> bool:
            if await follow_order(ctx.store, ctx.hub, order_id, after, websocket.send_bytes):
                return True
            archived = await history.get_order(ctx.db, order_id)
            if archived is None:
                return False
            for event in archived["events"]:
                if event["seq"] > after:
                    await websocket.send_bytes(orjson.dumps(event))
            return True

        finished, found = await _race_client(websocket, follow())
        if not finished:
            return
        if found:
            await websocket.close(CLOSE_NORMAL)
        else:
            await _refuse(websocket, CLOSE_NOT_FOUND, "order_not_found", f"no order {order_id}")
    finally:
        ctx.metrics.websockets.labels("order").dec()


async def order_feed(scope: Scope, receive: Receive, send: Send) -> None:
    """/ws/orders/{orderId}[?after=seq]"""
    websocket = WebSocket(scope, receive, send)
    await _served(websocket, stream_order(websocket, scope["path_params"]["order_id"], _query(scope, "after")))


async def order_feed_by_query(scope: Scope, receive: Receive, send: Send) -> None:
    """The "same endpoint upgrades" spelling: GET /api/orders/execute?orderId=...[&after=seq] with Upgrade."""
    websocket = WebSocket(scope, receive, send)
    order_id, after = _query(scope, "orderId"), _query(scope, "after")
    await _served(websocket, stream_order(websocket, order_id, after))


async def user_feed(scope: Scope, receive: Receive, send: Send) -> None:
    """/ws?userId=…: every event of every order of one owner, live, for as long as the socket is open."""
    websocket = WebSocket(scope, receive, send)
    await _served(websocket, _user_feed(websocket, scope, receive, send))


async def _user_feed(websocket: WebSocket, scope: Scope, receive: Receive, send: Send) -> None:
    ctx = _context(websocket)
    await websocket.accept()
    user_id = _query(scope, "userId") or ""
    if not 1 <= len(user_id) <= 64 or re.fullmatch(PRINTABLE_ID, user_id) is None:  # as an order's userId
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the client may already be gone
            await _refuse(websocket, CLOSE_BAD_REQUEST, "invalid_user_id", "userId must be 1-64 non-control characters")
        return
    caller = await _authenticate(websocket)
    if caller is None:
        return
    # An order placed with a key fans out under "<keyId>/<userId>" (Order.stream_user): a key hears its own.
    routing_key = user_id if caller.owner is None else f"{caller.owner}/{user_id}"

    async def send_event(event: bytes) -> None:  # straight to the server: the socket is open, events are bytes
        await send({"type": "websocket.send", "bytes": event})

    closing: list[asyncio.Task[None]] = []  # a reference, so the close is not collected before it runs

    async def close_too_slow() -> None:
        ctx.metrics.refused.labels("ws_too_slow").inc()
        with contextlib.suppress(Exception):  # the client may be gone already
            await send({"type": "websocket.close", "code": CLOSE_TOO_SLOW, "reason": "too slow"})

    def on_overflow() -> None:  # called by the hub's reader: it must not wait on this client
        closing.append(asyncio.get_running_loop().create_task(close_too_slow()))

    ctx.metrics.websockets.labels("user").inc()
    try:
        with ctx.hub.subscribe_user(
            routing_key, send_event, max_pending=ctx.settings.ws_user_outbox_max, on_overflow=on_overflow
        ):
            # The hub sends; this handler only reads, to notice the client leave (and to drop what it sends).
            # A client that does not read is closed by `on_overflow`, after which the server reports it gone.
            while (await receive())["type"] != "websocket.disconnect":
                pass
    finally:
        ctx.metrics.websockets.labels("user").dec()
        for task in closing:
            await _cancel(task)


async def _served(websocket: WebSocket, handler: Coroutine[Any, Any, None]) -> None:
    """Run a stream's handler; the client leaving is the normal end of a stream, and a backing store that
    stops answering ends it with 1011 (after an `{"type":"error"}` message) instead of an abrupt close."""
    try:
        await handler
    except (WebSocketDisconnect, RuntimeError):  # the client left (or the socket closed under a send)
        pass
    except BACKEND_ERRORS as exc:
        logger.warning("websocket {}: a backing store did not answer: {!r}", websocket.scope["path"], exc)
        if websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await _refuse(websocket, CLOSE_INTERNAL_ERROR, "unavailable", "a backing store is not answering")
    finally:
        if websocket.application_state is WebSocketState.CONNECTED:  # accepted and never closed by us
            with contextlib.suppress(Exception):
                await websocket.close(CLOSE_NORMAL)


def _query(scope: Scope, name: str) -> str | None:
    return QueryParams(scope["query_string"]).get(name)
