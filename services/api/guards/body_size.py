"""Request bodies larger than `MAX_BODY_BYTES` get a 413 with the contract's error body, on every route.

A declared Content-Length over the limit is refused before the route runs; a chunked body is counted
as the route reads it, and reading past the limit raises `ApiError(413)`, which the app's error
handlers turn into the same answer.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import ApiError, error_body
from services.api.responses import JsonResponse

BODY_TOO_LARGE = "body_too_large"


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            _count_refusal(scope)
            await JsonResponse(error_body(BODY_TOO_LARGE, self._message()), 413)(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    _count_refusal(scope)
                    raise ApiError(413, BODY_TOO_LARGE, self._message())
            return message

        await self.app(scope, counted_receive, send)

    def _message(self) -> str:
        return f"the body may be at most {self.max_bytes} bytes"


def _count_refusal(scope: Scope) -> None:
    context = getattr(scope["app"].state, "context", None)
    if context is not None:
        context.metrics.refused.labels(BODY_TOO_LARGE).inc()
