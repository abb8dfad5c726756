"""The one guard in front of every route: browser origin, rate, body size and open sockets, in that order.

A browser's request from a page of another site that would change state or open a WebSocket, or one that
reached the API by a name not its own (DNS rebinding), gets 403 (WebSocket: close 4403) with the contract's
error body: see browser_origin.py.

HTTP over the rate gets 429 with `Retry-After` and the contract's error body; a declared Content-Length
over `MAX_BODY_BYTES` gets 413 before any route runs, and a body without one (chunked) is counted as the
route reads it: reading past the limit raises `ApiError(413)`, which every route answers as the same 413.

A WebSocket over the rate or over `WS_MAX_PER_CLIENT` is accepted just long enough to say why
(`{"type": "error", ...}`, as the stream routes do) and closed with 4429: a browser never sees the status
of a refused handshake, only a close code and a message.

If Redis does not answer, requests are let through: the route itself then answers 503 where it needs
Redis, and an outage of the limiter must not become an outage of the API.

One plain ASGI class rather than a middleware per limit: every layer of a middleware stack is paid on
every request (a coroutine frame, a wrapped `receive`/`send`) and, for a WebSocket, kept alive for as
long as the socket is open.
"""

from __future__ import annotations

import contextlib

import orjson
from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.api import asgi
from services.api.deps import ApiContext
from services.api.errors import ApiError, error_body
from services.api.guards.browser_origin import BrowserPolicy, Refusal
from services.api.guards.client_identity import client_key
from services.api.guards.open_sockets import OpenSockets
from services.api.guards.rate_limit import RateLimit
from services.api.responses import JsonResponse
from shared.settings import Settings

#: Probes must answer however busy a client is: orchestrators poll them and act on silence.
EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})
#: The 4xxx analogue of HTTP 429, like the stream routes' 4400 and 4404.
CLOSE_TOO_MANY = 4429
#: The 4xxx analogue of HTTP 403: a browser page of another site, or one that reached the API by another name.
CLOSE_FORBIDDEN = 4403
RATE_LIMITED = "rate_limited"
TOO_MANY_WEBSOCKETS = "too_many_websockets"
BODY_TOO_LARGE = "body_too_large"


class Guard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.max_body_bytes = settings.max_body_bytes
        self.sockets = OpenSockets(settings.ws_max_per_client)
        self.browsers = BrowserPolicy.from_settings(settings)
        self._rate: RateLimit | None = None  # built on first use, on the Redis pool the lifespan made

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        is_websocket = kind == "websocket"
        # First, and for probes too: a page of another site, or one reached by a rebound name, costs nothing.
        refusal = self.browsers.refusal(None if is_websocket else scope["method"], asgi.headers(scope))
        if refusal is not None:
            await self._refuse_browser(scope, receive, send, refusal)
            return
        if scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        context: ApiContext = scope["app"].state.context
        client: str | None  # None when the limiter failed
        try:
            client = await client_key(scope, websocket=is_websocket)
            retry_after = await self._hit(context.redis, client)
        except (RedisError, OSError) as exc:
            logger.warning("{} {}: rate limit not checked, Redis did not answer: {!r}", kind, scope["path"], exc)
            client, retry_after = None, None
        except Exception:  # a fault of the limiter itself: it must not become an outage of the API either
            logger.exception("{} {}: rate limit not checked", kind, scope["path"])
            client, retry_after = None, None
        if retry_after is not None:
            context.metrics.refused.labels(RATE_LIMITED).inc()
            message = f"over {self.settings.rate_limit_per_s} requests/s from this client; retry in {retry_after} s"
            if is_websocket:
                await _refuse_websocket(scope, receive, send, RATE_LIMITED, message)
            else:
                response = JsonResponse(error_body(RATE_LIMITED, message), 429, {"Retry-After": str(retry_after)})
                await response(scope, receive, send)
            return
        if is_websocket:
            await self._websocket(scope, receive, send, client)
            return
        head = asgi.headers(scope)
        declared = head.get(b"content-length", b"")
        length_given = declared.isdigit()  # bytes.isdigit(): ASCII digits only
        if length_given and declared_over(declared, self.max_body_bytes):
            _count_refusal(scope)
            await JsonResponse(error_body(BODY_TOO_LARGE, self._too_large()), 413)(scope, receive, send)
            return
        if length_given and b"transfer-encoding" not in head:
            await self.app(scope, receive, send)  # the server reads exactly the declared length: nothing to count
        else:
            await self.app(scope, self._counted(scope, receive), send)  # chunked: counted as the route reads it

    async def _refuse_browser(self, scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
        context = getattr(scope["app"].state, "context", None)
        if context is not None:
            context.metrics.refused.labels(refusal.code).inc()
        if scope["type"] == "websocket":
            await _refuse_websocket(scope, receive, send, refusal.code, refusal.message, CLOSE_FORBIDDEN)
        else:
            await JsonResponse(error_body(refusal.code, refusal.message), 403)(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, client: str | None) -> None:
        if client is None:  # Redis did not answer: no identity to count sockets against
            await self.app(scope, receive, send)
            return
        if not self.sockets.admit(client):
            scope["app"].state.context.metrics.refused.labels(TOO_MANY_WEBSOCKETS).inc()
            limit = self.settings.ws_max_per_client
            message = f"at most {limit} open WebSockets per client"
            await _refuse_websocket(scope, receive, send, TOO_MANY_WEBSOCKETS, message)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.sockets.release(client)

    def _counted(self, scope: Scope, receive: Receive) -> Receive:
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    _count_refusal(scope)
                    raise ApiError(413, BODY_TOO_LARGE, self._too_large())
            return message

        return counted_receive

    async def _hit(self, redis: Redis, client: str) -> int | None:
        if not self.settings.rate_limit_per_s:
            return None
        if self._rate is None:
            self._rate = RateLimit(redis, self.settings.rate_limit_per_s, self.settings.rate_limit_window_s)
        return await self._rate.hit(client)

    def _too_large(self) -> str:
        return f"the body may be at most {self.max_body_bytes} bytes"


def declared_over(declared: bytes, limit: int) -> bool:
    """Whether a Content-Length of ASCII digits exceeds `limit`. Compared by its significant digits: the
    server lets "000…052" through at any length, and int() refuses more than 4300 digits (a 500)."""
    significant = declared.lstrip(b"0")
    return len(significant) > len(str(limit)) or int(significant or b"0") > limit


def _count_refusal(scope: Scope) -> None:
    context = getattr(scope["app"].state, "context", None)
    if context is not None:
        context.metrics.refused.labels(BODY_TOO_LARGE).inc()


async def _refuse_websocket(
    scope: Scope, receive: Receive, send: Send, error: str, message: str, code: int = CLOSE_TOO_MANY
) -> None:
    websocket = WebSocket(scope, receive, send)
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the client may be gone already
        await websocket.accept()
        await websocket.send_bytes(orjson.dumps({"type": "error", "error": error, "message": message}))
        await websocket.close(code)
