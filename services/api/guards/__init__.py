"""What one client may ask of the API: body size, request rate, open WebSockets.

Two small ASGI middlewares, so that every route is covered (including ones added later) and the routes
stay thin: `BodySizeLimit` (413) and `Admission` (429 with Retry-After; WebSocket close 4429). Health,
readiness and metrics probes are never rate limited. Back-pressure from the execution queue (503) stays
where the queue depth is checked, inside the order-creating Lua script.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.api.guards.admission import Admission
from services.api.guards.body_size import BodySizeLimit
from shared.settings import Settings


def install(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Admission, settings=settings)  # added last = outermost: a refused client costs least
