"""JSON responses rendered with orjson (fast, and it refuses NaN instead of emitting invalid JSON)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
