"""The live web dashboard: `GET /` serves one HTML page (page.html), `/dashboard/*` its scripts and stylesheet.

No build step: the files under static/ are what the browser runs (plain ES modules, no library). The page
reads the API like any other client (the contract's HTTP routes and WebSockets, with the API key the user
typed); the only thing it gets from here is the validation rules, rendered into the page as JSON so the
form refuses exactly what the API would (rules.py).

Neither route needs an API key: the page holds no data until the user's key fetches it.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from services.api.dashboard.rules import dashboard_rules
from shared.settings import Settings

#: The page itself sits beside static/, not in it: served raw, it would carry the rules mark instead of the rules.
PAGE_TEMPLATE = Path(__file__).parent / "page.html"
STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/dashboard"
_RULES_MARK = b"__DASHBOARD_RULES__"
#: Everything the page loads is its own: scripts, styles and sockets from this origin only, no inline script
#: (the rules are a JSON data block, which is not executed). 'self' covers ws:// on the same host and port.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def render_page(settings: Settings) -> bytes:
    """page.html with the rules in place. `<`, `>` and `&` are escaped so no value can end the data block."""
    rules = orjson.dumps(dashboard_rules(settings))
    for raw, escaped in ((b"<", rb"\u003c"), (b">", rb"\u003e"), (b"&", rb"\u0026")):
        rules = rules.replace(raw, escaped)
    return PAGE_TEMPLATE.read_bytes().replace(_RULES_MARK, rules)


def install(app: FastAPI, settings: Settings) -> None:
    page = render_page(settings)  # once: the rules depend only on settings, fixed for the process's life

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="dashboard")
