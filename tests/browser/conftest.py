"""The dashboard in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium) against every
service running as a real process on the suite's Redis and PostgreSQL.

Its own pytest run (`make test` runs it after the main suite; pyproject's addopts leave tests/browser out
of the default one): a sync Playwright session leaves an event loop behind that breaks asyncio tests run
after it in the same process. Playwright's own browser downloads are never used (`playwright install`
cannot reach its CDN here); `make test` installs Debian's chromium when it is missing.

Nothing here skips: a browser that cannot start fails every test with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.helpers import Watched, screenshot_name
from tests.support.processes import running_engine

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Simulated venues at a tenth of their latency: an order goes from pending to confirmed in well under a second.
ENGINE_ENV = {"SIM_LATENCY_SCALE": "0.1", "QUOTE_INTERVAL_MS": "200"}
#: Assertions on the page wait this long (Playwright's default, 5 s, is short for a shared 2-core machine).
expect.set_options(timeout=15_000)
#: Every WebSocket the page opens, kept where a test can close it as a network drop would (the page's own
#: code is untouched: it only sees its sockets close).
TRACK_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  const opened = [];
  window.__sockets = opened;
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); opened.push(this); }
  };
})();
"""


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        except Exception as exc:  # any failure to launch is the test's failure, with the browser's reason
            pytest.fail(f"Chromium ({CHROMIUM}) did not start: {exc}", pytrace=False)
        yield chromium
        chromium.close()


@pytest.fixture(scope="package")
def engine(redis_url, database_url, tmp_path_factory):
    with running_engine(redis_url, database_url, tmp_path_factory.mktemp("engine-logs"), **ENGINE_ENV) as engine:
        yield engine


@pytest.fixture
def api(engine) -> Iterator[httpx.Client]:
    """A plain HTTP client, to check what the page shows against what the API says."""
    with httpx.Client(base_url=engine.api_url, timeout=15) as client:
        yield client


@pytest.fixture
def open_page(browser, request):
    """open_page(url) → (page, watched): a fresh browser context (its own localStorage) per page. Each
    page is screenshotted when the test ends, pass or fail, and must have thrown no error."""
    contexts = []

    def open_(url: str):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        watched = Watched()
        page.add_init_script(TRACK_SOCKETS)
        page.on("websocket", lambda socket: watched.sockets.append(socket.url))
        page.on("request", lambda req: watched.requests.append((req.method, req.url)))
        page.on("pageerror", lambda exc: watched.errors.append(f"uncaught: {exc}"))
        page.on(
            "console",
            lambda msg: (
                watched.errors.append(f"console: {msg.text}") if "Content Security Policy" in msg.text else None
            ),
        )
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        page.watched = watched
        return page, watched

    yield open_
    for index, context in enumerate(contexts):
        for page in context.pages:
            page.screenshot(path=screenshot_name(request.node.nodeid, f"end{index or ''}"), full_page=True)
            assert not page.watched.errors, page.watched.errors
        context.close()
