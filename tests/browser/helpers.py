"""What the browser tests do to the dashboard and read from it, in the page's own terms (its form, its
order cards, its tables), and where their screenshots go."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import ROOT

SCREENSHOTS = ROOT / "reports" / "browser"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Watched:
    """What a page did that tests check: its sockets' URLs, requests, uncaught errors, CSP refusals."""

    sockets: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def sockets_for(self, order_id: str) -> list[str]:
        return [url for url in self.sockets if f"/ws/orders/{order_id}" in url]


def screenshot_name(nodeid: str, suffix: str = "") -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::")[-1]).strip("_")
    return SCREENSHOTS / f"{name}{'-' + suffix if suffix else ''}.png"


def shot(page, request, suffix: str) -> Path:
    """A screenshot at a moment worth seeing, as a test artefact in reports/browser/."""
    path = screenshot_name(request.node.nodeid, suffix)
    page.screenshot(path=path, full_page=True)
    return path


def eventually(page, check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy, letting Playwright deliver the page's events meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        page.wait_for_timeout(100)


def submit_order(page, **fields: str) -> None:
    """Fill the order form the way a user would (type first: it decides which fields show) and click Submit."""
    form = page.locator("#order-form")
    form.locator("select[name=type]").select_option(fields.pop("type", "market"))
    if "triggerKind" in fields:
        form.locator("select[name=triggerKind]").select_option(fields.pop("triggerKind"))
    for name, value in fields.items():
        form.locator(f"[name={name}]").fill(value)
    page.click("#submit-order")


def accepted_order_id(page) -> str:
    """The id the form reports after a 200 (it names the order it accepted)."""
    message = page.locator("#form-message[data-kind=ok]")
    message.wait_for()
    found = UUID.search(message.text_content() or "")
    assert found, message.text_content()
    return found.group(0)


def card(page, order_id: str):
    return page.locator(f'.order-card[data-order-id="{order_id}"]')


def timeline_events(page, order_id: str) -> list[tuple[int, str]]:
    """(seq, status) of every event row on the order's card, in page order."""
    return [
        tuple(row)
        for row in card(page, order_id)
        .locator("li.event")
        .evaluate_all("rows => rows.map(r => [Number(r.dataset.seq), r.dataset.status])")
    ]


def close_page_sockets(page, code: int = 3000) -> int:
    """Close every open WebSocket of the page from its side, as a dropped connection would end it."""
    return page.evaluate(
        "code => { const open = window.__sockets.filter(s => s.readyState === WebSocket.OPEN);"
        " open.forEach(s => s.close(code)); return open.length; }",
        code,
    )
