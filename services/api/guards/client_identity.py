"""Who a client is, for its limits: its API key's public id when it presented a valid key, else its IP.

The IP is the socket's peer. uvicorn replaces it with the X-Forwarded-For client only for proxies listed
in `FORWARDED_ALLOW_IPS` (empty by default), so a client cannot pick its own identity with a header.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from services.api.auth import identify
from services.api.errors import ApiError

UNKNOWN_PEER = "unknown"  # a unix-socket peer has no address


async def client_key(connection: HTTPConnection, *, websocket: bool) -> str:
    if connection.app.state.context.settings.auth_enabled:
        try:
            caller = await identify(connection, allow_query=websocket)
        except ApiError:  # no key or an unknown one: the route answers 401; until then it is just an address
            caller = None
        if caller is not None and caller.owner:
            return f"key:{caller.owner}"
    return f"ip:{connection.client.host if connection.client else UNKNOWN_PEER}"
