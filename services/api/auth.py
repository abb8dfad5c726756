"""Who is calling: the API key of a request and what it may do.

Where a key is presented: `Authorization: Bearer` or `X-API-Key` on every request; on a WebSocket also the
first message, `{"type": "auth", "apiKey": "…"}` (browsers cannot set headers on one), and, as a fallback
for clients that can do neither, the `apiKey` query parameter (it ends up in proxies' access logs and
browser history, which is why it is not the way to do it). No route makes keys: only `order-engine keys`
(a shell that reaches Redis) or API_KEYS do.

Two questions, kept apart:
- which orders a caller sees (`sees_every_order`, `scope`, `may_see`). With `AUTH_ENABLED` off (the local
  default) every caller is anonymous and sees every order, so the order routes behave exactly as the
  contract says. With it on, an order belongs to the key that placed it; another user key gets 404 for it
  (its existence is not revealed), and an admin key sees every order;
- whether it may use the admin routes (`may_administer`): only with an admin API key, so never with
  `AUTH_ENABLED` off (403 `admin_disabled`; the CLI's `order-engine dlq` works on the host without a key).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import orjson
from fastapi import Depends, Request
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection
from starlette.types import Message, Scope
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.api import asgi
from services.api.deps import ApiContext
from services.api.errors import ApiError
from shared.auth.api_keys import ApiKey
from shared.domain.untrusted import ASCII_SPACE

API_KEY_HEADER = b"x-api-key"
API_KEY_QUERY = "apiKey"
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="order-engine"'}
#: A WebSocket opened without a key has this long to send `{"type": "auth", "apiKey": "…"}` (then 4401): long
#: enough for a slow link, short enough that a socket nobody authenticates does not hold a slot for long.
WS_AUTH_TIMEOUT_S = 5.0
WS_AUTH_TYPE = "auth"
#: A key is at most 128 characters (KeyRing.find): an auth message is far smaller than this.
WS_AUTH_MESSAGE_MAX = 1024


@dataclass(frozen=True, slots=True)
class Caller:
    key: ApiKey | None

    @property
    def owner(self) -> str | None:
        """What an order placed by this caller records as its owner (None with keys disabled)."""
        return self.key.key_id if self.key else None

    @property
    def sees_every_order(self) -> bool:
        """Order visibility only: true with keys disabled (the anonymous caller) or with an admin key."""
        return self.key is None or self.key.is_admin

    @property
    def may_administer(self) -> bool:
        """May use the admin routes: an admin API key only, never the anonymous caller of keys disabled."""
        return self.key is not None and self.key.is_admin

    @property
    def scope(self) -> str | None:
        """The owner every read is restricted to; None = all orders (keys disabled, or an admin key)."""
        return None if self.sees_every_order else self.owner

    def may_see(self, owner: str | None) -> bool:
        return self.sees_every_order or owner == self.owner


ANONYMOUS = Caller(None)


def presented_secret(headers: Mapping[bytes, bytes], query_params: Mapping[str, str] | None = None) -> str | None:
    """The key from `Authorization: Bearer`, `X-API-Key`, or (WebSockets only: the fallback for clients that
    can neither set headers nor send an auth message) the `apiKey` query parameter. `headers` by lower-case
    name, as `asgi.headers` gives them."""
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = authorization.partition(" ")
    # ASCII spaces only: str.strip() also strips U+00A0 and U+0085, which would make "\xa0<key>" a second
    # spelling of a key (the same holds for the first message's key, below).
    token = token.strip(ASCII_SPACE)
    if scheme.lower() == "bearer" and token:
        return token
    api_key = headers.get(API_KEY_HEADER, b"").decode("latin-1").strip(ASCII_SPACE)
    if api_key:
        return api_key
    if query_params is not None and query_params.get(API_KEY_QUERY):
        return query_params.get(API_KEY_QUERY)
    return None


async def identify(connection: HTTPConnection, *, allow_query: bool = False) -> Caller:
    """The caller, or ApiError(401) when keys are enabled and none (or an unknown one) was presented."""
    return await identify_scope(connection.scope, allow_query=allow_query)


async def identify_scope(scope: Scope, *, allow_query: bool = False) -> Caller:
    """`identify` for the routes served as plain ASGI. The caller is remembered in the request's state, so
    the guard (per-key rate limit) and the route that both ask look the key up once."""
    state = scope.setdefault("state", {})
    known: Caller | None = state.get("caller")
    if known is not None:
        return known
    ctx: ApiContext = scope["app"].state.context
    if not ctx.settings.auth_enabled:
        return ANONYMOUS
    query = QueryParams(scope["query_string"]) if allow_query else None
    secret = presented_secret(asgi.headers(scope), query)
    if not secret:
        raise ApiError(401, "unauthorized", "send an API key (Authorization: Bearer)", headers=UNAUTHORIZED_HEADERS)
    key = await ctx.keys.find(secret)
    if key is None:
        raise ApiError(401, "unauthorized", "this API key is not known (or was revoked)", headers=UNAUTHORIZED_HEADERS)
    state["caller"] = caller = Caller(key)
    return caller


def auth_message_secret(message: Message) -> str | None:
    """The key a WebSocket message `{"type": "auth", "apiKey": "…"}` (text or binary frame) carries, or None."""
    raw = message.get("text")
    if raw is None:
        raw = message.get("bytes")
    if not raw or len(raw) > WS_AUTH_MESSAGE_MAX:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("type") != WS_AUTH_TYPE:
        return None
    secret = data.get("apiKey")
    secret = secret.strip(ASCII_SPACE) if isinstance(secret, str) else None
    return secret or None


async def identify_websocket(websocket: WebSocket) -> Caller:
    """The caller of an accepted WebSocket: by the key in its headers (or `?apiKey=`), else by its first
    message, which must then be `{"type": "auth", "apiKey": "…"}` and come within WS_AUTH_TIMEOUT_S.
    ApiError(401) otherwise, when keys are enabled; the anonymous caller when they are not (a first message
    is then left for the stream, which ignores what clients send)."""
    scope = websocket.scope
    ctx: ApiContext = scope["app"].state.context
    if not ctx.settings.auth_enabled:
        return ANONYMOUS
    if presented_secret(asgi.headers(scope), QueryParams(scope["query_string"])):
        return await identify_scope(scope, allow_query=True)
    try:
        async with asyncio.timeout(WS_AUTH_TIMEOUT_S):
            message = await websocket.receive()
    except TimeoutError:
        raise ApiError(401, "unauthorized", _AUTH_MESSAGE_WANTED, headers=UNAUTHORIZED_HEADERS) from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    secret = auth_message_secret(message)
    if secret is None:
        raise ApiError(401, "unauthorized", _AUTH_MESSAGE_WANTED, headers=UNAUTHORIZED_HEADERS)
    key = await ctx.keys.find(secret)
    if key is None:
        raise ApiError(401, "unauthorized", "this API key is not known (or was revoked)", headers=UNAUTHORIZED_HEADERS)
    scope.setdefault("state", {})["caller"] = caller = Caller(key)
    return caller


_AUTH_MESSAGE_WANTED = (
    f'send an API key: Authorization: Bearer, or {{"type":"auth","apiKey":"…"}} as the first message '
    f"within {WS_AUTH_TIMEOUT_S:g} s"
)


async def _caller(request: Request) -> Caller:
    return await identify(request)


#: The 403 of every admin route while `AUTH_ENABLED` is off: there is no key that could open them.
ADMIN_DISABLED = "admin_disabled"
ADMIN_DISABLED_MESSAGE = (
    "admin routes need AUTH_ENABLED=true and an admin API key; `order-engine dlq …` works on the host without one"
)


async def require_admin(request: Request) -> Caller:
    """The admin routes' guard: 403 `admin_disabled` with keys disabled, 401 without a valid key, 403
    `forbidden` with a user key. The admin router applies it to every route it has, and routes that log who
    asked take the same dependency (`AdminDep`), which FastAPI then solves once per request."""
    caller = await identify(request)
    if caller.key is None:
        raise ApiError(403, ADMIN_DISABLED, ADMIN_DISABLED_MESSAGE)
    if not caller.may_administer:
        raise ApiError(403, "forbidden", "this route needs an admin API key")
    return caller


CallerDep = Annotated[Caller, Depends(_caller)]
AdminDep = Annotated[Caller, Depends(require_admin)]
