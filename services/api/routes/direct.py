"""The routes the app serves as plain ASGI, without FastAPI's middleware stack and dependency solving.

Those called per order or held open by the thousand: the order submission (one POST per order) and the
three WebSocket streams (a socket per user or per order, alive for as long as the client listens; under
FastAPI each one kept a dozen coroutine frames, exit stacks and wrapped callables alive). Every other
route goes through FastAPI. The guard in front (services/api/guards) has applied the client's limits to
both alike, and the OpenAPI document still declares the order route with its real body and answers.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Scope

from services.api.routes import streams
from services.api.routes.orders import serve_submit

SUBMIT_PATH = "/api/orders/execute"
USER_FEED_PATH = "/ws"
ORDER_FEED_PREFIX = "/ws/orders/"


def direct_endpoint(scope: Scope) -> ASGIApp | None:
    """The endpoint serving this request directly, or None when FastAPI routes it (a path parameter is put
    in the scope's `path_params`, as Starlette's router does)."""
    path = scope["path"]
    root = scope.get("root_path")
    if root and path.startswith(root):
        path = path[len(root) :]
    if scope["type"] == "http":
        return serve_submit if path == SUBMIT_PATH and scope["method"] == "POST" else None
    if scope["type"] != "websocket":
        return None
    if path == USER_FEED_PATH:
        return streams.user_feed
    if path == SUBMIT_PATH:  # the "same endpoint upgrades" spelling: GET /api/orders/execute?orderId=…
        return streams.order_feed_by_query
    if path.startswith(ORDER_FEED_PREFIX):
        order_id = path[len(ORDER_FEED_PREFIX) :]
        if order_id and "/" not in order_id:  # what Starlette's {order_id} matches
            scope["path_params"] = {"order_id": order_id}
            return streams.order_feed
    return None
