"""Who a client is, for its limits: its API key's public id when it presented a valid key, else its IP.

The IP is the socket's peer. uvicorn replaces it with the X-Forwarded-For client only for proxies listed
in `FORWARDED_ALLOW_IPS` (empty by default), so a client cannot pick its own identity with a header.
"""

from __future__ import annotations

from starlette.types import Scope

from services.api.auth import identify_scope
from services.api.errors import ApiError

UNKNOWN_PEER = "unknown"  # a unix-socket peer has no address


async def client_key(scope: Scope, *, websocket: bool) -> str:
    if scope["app"].state.context.settings.auth_enabled:
        try:
            caller = await identify_scope(scope, allow_query=websocket)
        except ApiError:  # no key or an unknown one: the route answers 401; until then it is just an address
            caller = None
        if caller is not None and caller.owner:
            return identity(scope, caller.owner)
    return identity(scope, None)


def identity(scope: Scope, key_owner: str | None) -> str:
    """The client's identity once its API key (None without one) is known: also who owns its resting orders."""
    if key_owner:
        return f"key:{key_owner}"
    peer = scope.get("client")
    return f"ip:{peer[0] if peer else UNKNOWN_PEER}"
