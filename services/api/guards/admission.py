"""Admits a request or WebSocket only while its client is within its rate and open-socket limits.

HTTP over the rate gets 429 with `Retry-After` and the contract's error body. A WebSocket over either
limit is accepted just long enough to say why (`{"type": "error", ...}`, as the stream routes do) and
closed with 4429: a browser never sees the status of a refused handshake, only a close code and a message.
If Redis does not answer, requests are let through: the route itself then answers 503 where it needs
Redis, and an outage of the limiter must not become an outage of the API.
"""

from __future__ import annotations

import contextlib

import orjson
from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.api.errors import error_body
from services.api.guards.client_identity import client_key
from services.api.guards.open_sockets import OpenSockets
from services.api.guards.rate_limit import RateLimit
from services.api.responses import JsonResponse
from shared.settings import Settings

#: Probes must answer however busy a client is: orchestrators poll them and act on silence.
EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})
#: The 4xxx analogue of HTTP 429, like the stream routes' 4400 and 4404.
CLOSE_TOO_MANY = 4429
RATE_LIMITED = "rate_limited"
TOO_MANY_WEBSOCKETS = "too_many_websockets"


class Admission:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.sockets = OpenSockets(settings.ws_max_per_client)
        self._rate: RateLimit | None = None  # built on first use, on the Redis pool the lifespan made

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        is_websocket = scope["type"] == "websocket"
        connection = WebSocket(scope, receive, send) if is_websocket else Request(scope)
        context = scope["app"].state.context
        try:
            client = await client_key(connection, websocket=is_websocket)
            retry_after = await self._hit(context.redis, client)
        except (RedisError, OSError) as exc:
            logger.warning(
                "{} {}: rate limit not checked, Redis did not answer: {!r}", scope["type"], scope["path"], exc
            )
            client, retry_after = None, None
        if retry_after is not None:
            context.metrics.refused.labels(RATE_LIMITED).inc()
            message = f"over {self.settings.rate_limit_per_s} requests/s from this client; retry in {retry_after} s"
            if is_websocket:
                await _refuse_websocket(connection, RATE_LIMITED, message)
            else:
                response = JsonResponse(error_body(RATE_LIMITED, message), 429, {"Retry-After": str(retry_after)})
                await response(scope, receive, send)
            return
        if not is_websocket or client is None:
            await self.app(scope, receive, send)
            return
        with self.sockets.hold(client) as admitted:
            if admitted:
                await self.app(scope, receive, send)
                return
        context.metrics.refused.labels(TOO_MANY_WEBSOCKETS).inc()
        limit = self.settings.ws_max_per_client
        await _refuse_websocket(connection, TOO_MANY_WEBSOCKETS, f"at most {limit} open WebSockets per client")

    async def _hit(self, redis: Redis, client: str) -> int | None:
        if not self.settings.rate_limit_per_s:
            return None
        if self._rate is None:
            self._rate = RateLimit(redis, self.settings.rate_limit_per_s, self.settings.rate_limit_window_s)
        return await self._rate.hit(client)


async def _refuse_websocket(websocket: WebSocket, error: str, message: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the client may be gone already
        await websocket.accept()
        await websocket.send_bytes(orjson.dumps({"type": "error", "error": error, "message": message}))
        await websocket.close(CLOSE_TOO_MANY)
