"""The few pieces of plain ASGI the hot paths use instead of FastAPI's request machinery.

The order route and the WebSocket streams are called hundreds or thousands of times a second; FastAPI's
middleware stack, dependency solving and Request objects cost more there than the work itself (see the
docs/benchmarks.md). These helpers read what those paths need straight from the ASGI scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from starlette.types import Receive, Scope, Send

#: Where `headers` keeps a request's header table, so every layer that asks parses them once.
_HEADERS_KEY = "engine.headers"
JSON_CONTENT_TYPE = b"application/json"
_NONE: Mapping[str, str] = MappingProxyType({})


class ClientGone(Exception):
    """The client disconnected before its request body arrived: there is no one to answer."""


def headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name; of a repeated header the first, as Starlette's Headers.get."""
    table = scope.get(_HEADERS_KEY)
    if table is None:
        table = scope[_HEADERS_KEY] = dict(reversed(scope["headers"]))
    return table


def header(scope: Scope, name: bytes) -> str | None:
    value = headers(scope).get(name)
    return None if value is None else value.decode("latin-1")


async def read_body(receive: Receive) -> bytes:
    """The whole request body (its size is bounded by the guard in front, which counts what is received)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(send: Send, status: int, content: bytes, extra_headers: Mapping[str, str] = _NONE) -> None:
    """A JSON answer already rendered to bytes, with the same headers as `JsonResponse` would send."""
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra_headers.items()]
    raw += ((b"content-length", str(len(content)).encode()), (b"content-type", JSON_CONTENT_TYPE))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})
