"""Who is calling: the API key of a request (header, or `apiKey` query on WebSockets) and what it may see.

With `AUTH_ENABLED` off (the local default) every caller is an anonymous admin and the engine behaves
exactly as the contract says. With it on, an order belongs to the key that placed it; another user key
gets 404 for it (its existence is not revealed), and admin routes need an admin key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection
from starlette.types import Scope

from services.api import asgi
from services.api.errors import ApiError
from shared.auth.api_keys import ApiKey

API_KEY_HEADER = b"x-api-key"
API_KEY_QUERY = "apiKey"
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="order-engine"'}


@dataclass(frozen=True, slots=True)
class Caller:
    key: ApiKey | None

    @property
    def owner(self) -> str | None:
        """What an order placed by this caller records as its owner (None with keys disabled)."""
        return self.key.key_id if self.key else None

    @property
    def is_admin(self) -> bool:
        return self.key is None or self.key.is_admin

    @property
    def scope(self) -> str | None:
        """The owner every read is restricted to; None = all orders (keys disabled, or an admin key)."""
        return None if self.is_admin else self.owner

    def may_see(self, owner: str | None) -> bool:
        return self.is_admin or owner == self.owner


ANONYMOUS = Caller(None)


def presented_secret(headers: Mapping[bytes, bytes], query_params: Mapping[str, str] | None = None) -> str | None:
    """The key from `Authorization: Bearer`, `X-API-Key`, or (WebSockets only, browsers cannot set
    headers there) the `apiKey` query parameter. `headers` by lower-case name, as `asgi.headers` gives them."""
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = headers.get(API_KEY_HEADER, b"").decode("latin-1").strip()
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
    known = state.get("caller")
    if known is not None:
        return known
    ctx = scope["app"].state.context
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


async def _caller(request: Request) -> Caller:
    return await identify(request)


async def _admin(request: Request) -> Caller:
    caller = await identify(request)
    if not caller.is_admin:
        raise ApiError(403, "forbidden", "this route needs an admin API key")
    return caller


CallerDep = Annotated[Caller, Depends(_caller)]
AdminDep = Annotated[Caller, Depends(_admin)]
