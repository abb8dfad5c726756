"""What one client may ask of the API: where a browser's request comes from, body size, request rate,
open WebSockets.

One pure-ASGI layer, `Guard` (guard.py), in front of every route, the ones FastAPI serves and the ones
served directly alike (including routes added later): 403 (WebSocket: close 4403) for a browser page of
another site that would change state or open a WebSocket, or one reaching the API by a name not its own
(browser_origin.py); 413 for a body over `MAX_BODY_BYTES`; 429 with Retry-After over the rate (WebSocket:
close 4429); close 4429 over the open-socket cap. Health, readiness and metrics probes are never limited
(only the browser check applies to them). Back-pressure from the execution queue (503) stays where the queue
depth is checked, inside the order-creating Lua script.
"""

from __future__ import annotations

from services.api.guards.guard import Guard

__all__ = ["Guard"]
