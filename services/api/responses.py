"""JSON responses rendered with orjson (fast, and it refuses NaN instead of emitting invalid JSON)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DirectResponse", "JsonResponse", "Response"]


class JsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class DirectResponse(Response):
    """What a FastAPI endpoint returns to hand its request to a plain ASGI endpoint, which reads the body and
    answers itself (services/api/routes/direct.py: the routes the app serves without FastAPI)."""

    def __init__(self, endpoint: ASGIApp) -> None:  # no body, status or headers of its own
        self.endpoint = endpoint
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, receive, send)
