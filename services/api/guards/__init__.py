"""What one client may ask of the API: body size, request rate, open WebSockets.

One pure-ASGI layer, `Guard` (guard.py), in front of every route, the ones FastAPI serves and the ones
served directly alike (including routes added later): 413 for a body over `MAX_BODY_BYTES`, 429 with
Retry-After over the rate (WebSocket: close 4429), close 4429 over the open-socket cap. Health, readiness
and metrics probes are never limited. Back-pressure from the execution queue (503) stays where the queue
depth is checked, inside the order-creating Lua script.
"""

from __future__ import annotations

from services.api.guards.guard import Guard

__all__ = ["Guard"]
