"""The dashboard driven by clicks in headless Chromium, against every service as a real process: prices
charted live, orders submitted from the form and followed to their end, client-side validation, resting
orders cancelled, history filtered, and a timeline that resumes with `?after=` when its socket drops."""

from __future__ import annotations

import re
import time
import uuid
from decimal import Decimal

from playwright.sync_api import expect

from shared.auth.api_keys import hash_key, new_secret
from shared.domain.conditional import trail_level
from tests.browser.helpers import (
    accepted_order_id,
    card,
    close_page_sockets,
    eventually,
    shot,
    submit_order,
    timeline_events,
)
from tests.support.api_process import api_only
from tests.support.validation_cases import CASES

MARKET_PATH = ["pending", "routing", "building", "submitted", "confirmed"]
UNREACHABLE_LIMIT = "1000000"  # SOL at a million USDC: rests until cancelled
WIDEST_TRAIL_BPS = "5000"  # fires only after BEST halves from its high: rests until cancelled


def wait_for_api_status(api, order_id: str, status: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        order = api.get(f"/api/orders/{order_id}").json()
        if order.get("status") == status or time.monotonic() > deadline:
            assert order.get("status") == status, order
            return order
        time.sleep(0.1)


def api_event(api, order_id: str, status: str, timeout: float = 20) -> dict:
    """The order's first event with this status, once the API has it (the order may have moved on since)."""
    deadline = time.monotonic() + timeout
    while True:
        events = api.get(f"/api/orders/{order_id}").json().get("events", [])
        found = next((event for event in events if event["status"] == status), None)
        if found or time.monotonic() > deadline:
            assert found, events
            return found
        time.sleep(0.1)


def test_the_chart_draws_live_quotes_per_pair(open_page, engine, request):
    page, _ = open_page(f"{engine.api_url}/")
    chart = page.locator("#price-chart")
    expect(chart).to_have_attribute("data-pair", "SOL-USDC")
    page.wait_for_function("() => Number(document.querySelector('#price-chart').dataset.points) >= 4", timeout=30_000)
    for series in ("best", "raydium", "meteora"):
        points = chart.locator(f'polyline[data-series="{series}"]').get_attribute("points")
        assert len(points.split()) >= 4, (series, points)
    legend = page.locator("#chart-legend")
    expect(legend.locator('[data-series="best"]')).to_contain_text("USDC/SOL via")
    expect(page.locator("#api-status")).to_have_attribute("data-state", "up")
    shot(page, request, "sol-usdc")

    page.click('.pair-tab[data-pair="JUP-USDC"]')
    expect(chart).to_have_attribute("data-pair", "JUP-USDC")
    page.wait_for_function("() => document.querySelector('#price-chart polyline[data-series=best]') !== null")
    expect(page.locator('.pair-tab[data-pair="BONK-SOL"] .pair-price')).not_to_have_text("—")


def test_a_market_order_submitted_by_clicking_is_confirmed_on_its_timeline(open_page, engine, api, request):
    page, watched = open_page(f"{engine.api_url}/")
    submit_order(page, amount="0.25", slippageBps="300")
    order_id = accepted_order_id(page)
    order_card = card(page, order_id)
    expect(order_card).to_have_attribute("data-status", "confirmed", timeout=30_000)

    assert [status for _, status in timeline_events(page, order_id)] == MARKET_PATH
    tx_hash = order_card.locator(".summary .tx-hash .value").text_content()
    executed_price = order_card.locator(".summary .executed-price .value").text_content()
    routing = order_card.locator('li.event[data-status="routing"]')
    expect(routing.locator(".quote")).to_have_count(2)  # both venues' quotes, the chosen one(s) marked
    assert "null" not in order_card.text_content() and "undefined" not in order_card.text_content()
    shot(page, request, "confirmed")

    truth = api.get(f"/api/orders/{order_id}").json()
    confirmed = truth["events"][-1]
    assert (tx_hash, executed_price) == (confirmed["txHash"], confirmed["executedPrice"])
    # The route as the routing event has it (an event from before routes has none, and shows none).
    routed = next(e for e in truth["events"] if e["status"] == "routing")
    plan, impact = routed.get("routePlan") or [], routed.get("priceImpactPct")
    expect(routing.locator(".route .leg")).to_have_text([f"{leg['dex']} {leg['percent']}%" for leg in plan])
    expect(routing.locator(".quote.chosen")).to_have_count(len(plan) or 1)
    expect(routing.locator(".price-impact .value")).to_have_text([] if impact is None else [f"{impact} %"])
    assert tx_hash and executed_price
    assert watched.sockets_for(order_id), "the timeline follows the order over its WebSocket"


def test_client_side_validation_blocks_a_bad_order_before_it_is_sent(open_page, engine, request):
    page, watched = open_page(f"{engine.api_url}/")
    amount_error = page.locator('.field-error[data-for="amount"]')

    submit_order(page, amount="0")
    expect(amount_error).to_have_text("amount must be greater than 0")
    expect(page.locator("#form-message")).to_have_attribute("data-kind", "invalid")
    shot(page, request, "amount-zero")

    submit_order(page, amount="0.0000000001")  # SOL has 9 decimals
    expect(amount_error).to_have_text("amount has 10 decimals; SOL allows 9")
    submit_order(page, amount="abc")
    expect(amount_error).to_have_text("amount must be a decimal string or number")
    submit_order(page, type="limit", amount="1", limitPrice="")
    expect(page.locator('.field-error[data-for="limitPrice"]')).to_contain_text("limitPrice")
    submit_order(page, type="market", amount="1", slippageBps="9000")
    expect(page.locator('.field-error[data-for="slippageBps"]')).to_have_text("slippageBps must be at most 5000")

    page.wait_for_timeout(300)
    posts = [url for method, url in watched.requests if method == "POST"]
    assert posts == [], f"the form sent {posts}"

    submit_order(page, type="market", amount="1", slippageBps="")  # the same form, now valid: it is sent
    accepted_order_id(page)
    expect(amount_error).to_be_empty()


def test_the_pages_validation_agrees_with_the_api_on_the_whole_table(open_page, engine):
    page, _ = open_page(f"{engine.api_url}/")
    cases = [{"name": name, "body": body, "code": code} for name, body, code in CASES]
    codes = page.evaluate(
        """async (cases) => {
            const rules = await import('/dashboard/js/rules.js');
            const limits = rules.readRules();
            return cases.map((c) => rules.validateOrder(c.body, limits).code);
        }""",
        cases,
    )
    mismatches = [
        (case["name"], got, case["code"]) for case, got in zip(cases, codes, strict=True) if got != case["code"]
    ]
    assert not mismatches, "page vs API (name, page's code, API's code)"


def test_a_resting_limit_order_is_listed_and_cancelled_by_clicking(open_page, engine, api, request):
    page, _ = open_page(f"{engine.api_url}/")
    submit_order(page, type="limit", amount="1", limitPrice=UNREACHABLE_LIMIT)
    order_id = accepted_order_id(page)
    order_card = card(page, order_id)
    expect(order_card).to_have_attribute("data-status", "waiting")

    row = page.locator(f'#open-table tr[data-order-id="{order_id}"]')
    expect(row).to_contain_text(f"BEST ≥ {UNREACHABLE_LIMIT} USDC/SOL")
    shot(page, request, "resting")
    row.locator("button.cancel").click()

    expect(order_card).to_have_attribute("data-status", "cancelled")
    expect(row).to_have_count(0)
    assert timeline_events(page, order_id) == [(1, "pending"), (2, "waiting"), (3, "cancelled")]
    wait_for_api_status(api, order_id, "cancelled")
    # PostgreSQL catches up: the next listing of open orders leaves it out too.
    page.click("#open-refresh")
    page.wait_for_timeout(500)
    expect(row).to_have_count(0)
    shot(page, request, "cancelled")


def test_a_sniper_order_from_the_form_rests_on_its_trigger_until_cancelled(open_page, engine, api, request):
    page, _ = open_page(f"{engine.api_url}/")
    never = "999999999999"  # WIF: a launched pool's liquidity tops out near 1.3 million
    submit_order(page, type="sniper", triggerKind="liquidity", tokenOut="WIF", amount="0.5", minLiquidity=never)
    order_id = accepted_order_id(page)
    expect(card(page, order_id)).to_have_attribute("data-status", "waiting")
    row = page.locator(f'#open-table tr[data-order-id="{order_id}"]')
    expect(row).to_contain_text(f"pool liquidity ≥ {never} WIF")
    assert api.get(f"/api/orders/{order_id}").json()["events"][1]["trigger"] == {
        "kind": "liquidity",
        "minLiquidity": never,
    }
    shot(page, request, "resting")
    row.locator("button.cancel").click()
    expect(card(page, order_id)).to_have_attribute("data-status", "cancelled")
    wait_for_api_status(api, order_id, "cancelled")


def test_a_trailing_stop_from_the_form_shows_its_level_and_high_live(open_page, engine, api, request):
    page, watched = open_page(f"{engine.api_url}/")
    submit_order(page, type="trailing_stop", amount="1", trailBps=WIDEST_TRAIL_BPS)
    order_id = accepted_order_id(page)
    order_card = card(page, order_id)
    expect(order_card).to_have_attribute("data-status", "waiting")
    expect(order_card.locator('li.event[data-status="waiting"] .trail-bps .value')).to_have_text("5000 bps")

    # Armed at the first BEST tick after placement; the row then shows what GET /api/orders/{id} says.
    row = page.locator(f'#open-table tr[data-order-id="{order_id}"]')
    expect(row.locator(".waits-for")).to_have_text("BEST ≤ high − 5000 bps")
    expect(row).to_have_attribute("data-armed", "true")
    high = Decimal(row.locator(".high-water-mark .value").text_content())
    level = Decimal(row.locator(".stop-level .value").text_content())
    assert level == trail_level(high, int(WIDEST_TRAIL_BPS)) and level > 0
    truth = api.get(f"/api/orders/{order_id}").json()
    assert truth["armed"] is True and Decimal(truth["highWaterMark"]) >= high  # a high only ever rises
    shot(page, request, "armed")

    # Live: the page keeps reading the order while it rests.
    def reads() -> int:
        return sum(1 for method, url in watched.requests if method == "GET" and url.endswith(f"/api/orders/{order_id}"))

    first = reads()
    eventually(page, lambda: reads() > first, timeout=10, what="another read of the trailing stop")
    row.locator("button.cancel").click()
    expect(order_card).to_have_attribute("data-status", "cancelled")
    expect(row).to_have_count(0)
    wait_for_api_status(api, order_id, "cancelled")


def test_the_form_refuses_another_types_field_then_sends_a_stop_that_fires(open_page, engine, api, request):
    page, watched = open_page(f"{engine.api_url}/")
    form = page.locator("#order-form")
    take_profit = form.locator('[data-type-field="takeProfitPrice"]')
    take_profit_error = page.locator('.field-error[data-for="takeProfitPrice"]')
    form.locator("select[name=type]").select_option("oco")
    for name, value in {"amount": "0.25", "slippageBps": "300", "takeProfitPrice": "140", "stopPrice": "150"}.items():
        form.locator(f"[name={name}]").fill(value)
    page.click("#submit-order")
    expect(take_profit_error).to_have_text("takeProfitPrice must be above stopPrice")

    # A stop takes no take-profit: the field keeps its value, stays shown, marked, and is refused as the API would.
    form.locator("select[name=type]").select_option("stop")
    expect(take_profit).to_have_class(re.compile(r"\bforeign\b"))
    page.click("#submit-order")
    expect(take_profit_error).to_have_text("takeProfitPrice is only allowed for oco orders")
    expect(page.locator("#form-message")).to_have_attribute("data-kind", "invalid")
    shot(page, request, "foreign-field")

    form.locator("select[name=type]").select_option("trailing_stop")
    form.locator("[name=takeProfitPrice]").fill("")
    form.locator("[name=stopPrice]").fill("")
    form.locator("[name=trailBps]").fill("5001")
    page.click("#submit-order")
    expect(page.locator('.field-error[data-for="trailBps"]')).to_have_text("trailBps must be at most 5000")
    expect(take_profit).to_be_hidden()
    page.wait_for_timeout(300)
    assert [url for method, url in watched.requests if method == "POST"] == [], "the form sent a refused order"

    # Valid now: a stop far above BEST fires on the next tick, and its timeline names the condition and price.
    form.locator("[name=trailBps]").fill("")
    form.locator("select[name=type]").select_option("stop")
    form.locator("[name=stopPrice]").fill(UNREACHABLE_LIMIT)
    page.click("#submit-order")
    order_id = accepted_order_id(page)
    triggered = card(page, order_id).locator('li.event[data-status="triggered"]')
    expect(triggered.locator(".condition .value")).to_have_text("stop")
    event = api_event(api, order_id, "triggered")
    expect(triggered.locator(".trigger-price .value")).to_have_text(event["triggerPrice"])
    expect(triggered.locator(".stop-price .value")).to_have_text(UNREACHABLE_LIMIT)
    shot(page, request, "triggered")


def test_history_lists_persisted_orders_and_filters_them(open_page, engine, api, request):
    user = f"hist-{uuid.uuid4().hex[:8]}"
    base = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": "0.5", "userId": user}
    market = api.post("/api/orders/execute", json={**base, "slippageBps": 300}).json()["orderId"]
    limit = api.post("/api/orders/execute", json={**base, "type": "limit", "limitPrice": UNREACHABLE_LIMIT}).json()
    limit = limit["orderId"]
    wait_for_api_status(api, market, "confirmed")
    wait_for_api_status(api, limit, "waiting")
    assert api.delete(f"/api/orders/{limit}").status_code == 200

    page, _ = open_page(f"{engine.api_url}/")
    filters = page.locator("#history-form")
    filters.locator("[name=userId]").fill(user)
    rows = page.locator("#history-table tbody tr[data-order-id]")

    def persisted() -> bool:  # db-sync writes history a moment after the events
        filters.locator("button[type=submit]").click()
        page.wait_for_timeout(300)
        statuses = rows.evaluate_all("rows => rows.map(r => r.dataset.status)")
        return sorted(statuses) == ["cancelled", "confirmed"]

    eventually(page, persisted, what="both orders in history")
    confirmed_row = page.locator(f'#history-table tr[data-order-id="{market}"]')
    assert confirmed_row.locator("td").nth(6).text_content() in ("raydium", "meteora")
    assert confirmed_row.locator("td").nth(7).text_content()  # executed price
    shot(page, request, "both")

    filters.locator("[name=status]").select_option("cancelled")
    filters.locator("button[type=submit]").click()
    expect(rows).to_have_count(1)
    expect(page.locator(f'#history-table tr[data-order-id="{limit}"]')).to_have_attribute("data-status", "cancelled")

    filters.locator("[name=status]").select_option("confirmed")
    filters.locator("[name=type]").select_option("market")
    filters.locator("button[type=submit]").click()
    expect(rows).to_have_count(1)
    expect(confirmed_row).to_have_count(1)
    shot(page, request, "filtered")

    # A history row opens the order's timeline: replayed from its first event.
    confirmed_row.locator("button.link").click()
    expect(card(page, market)).to_have_attribute("data-status", "confirmed")
    assert [status for _, status in timeline_events(page, market)] == MARKET_PATH


def test_a_dropped_socket_resumes_after_the_last_event_shown(open_page, engine, request):
    page, watched = open_page(f"{engine.api_url}/")
    submit_order(page, type="limit", amount="1", limitPrice=UNREACHABLE_LIMIT)
    order_id = accepted_order_id(page)
    order_card = card(page, order_id)
    expect(order_card).to_have_attribute("data-status", "waiting")
    expect(order_card).to_have_attribute("data-feed", "live")
    assert watched.sockets_for(order_id) == [f"{engine.ws_url}/ws/orders/{order_id}"]

    assert close_page_sockets(page) >= 1
    eventually(page, lambda: any("after=2" in url for url in watched.sockets_for(order_id)), what="a resumed socket")
    expect(order_card).to_have_attribute("data-feed", "live")
    shot(page, request, "resumed")

    page.locator(f'#open-table tr[data-order-id="{order_id}"] button.cancel').click()
    expect(order_card).to_have_attribute("data-status", "cancelled")
    assert timeline_events(page, order_id) == [(1, "pending"), (2, "waiting"), (3, "cancelled")]
    expect(order_card).to_have_attribute("data-duplicates", "0")


def test_the_timeline_resumes_across_an_api_restart(open_page, engine, api, request):
    page, watched = open_page(f"{engine.api_url}/")
    submit_order(page, type="limit", amount="1", limitPrice=UNREACHABLE_LIMIT)
    order_id = accepted_order_id(page)
    order_card = card(page, order_id)
    expect(order_card).to_have_attribute("data-feed", "live")
    expect(page.locator(f'#open-table tr[data-order-id="{order_id}"]')).to_have_count(1)

    engine.replica("api").kill()  # SIGKILL: the socket drops without a close frame
    expect(order_card).to_have_attribute("data-feed", re.compile("reconnecting|resuming"))
    expect(page.locator("#api-status")).to_have_attribute("data-state", "down")
    shot(page, request, "api-down")
    engine.restart("api")

    eventually(page, lambda: any("after=2" in url for url in watched.sockets_for(order_id)), what="a resumed socket")
    expect(order_card).to_have_attribute("data-feed", "live", timeout=30_000)
    page.locator(f'#open-table tr[data-order-id="{order_id}"] button.cancel').click()
    expect(order_card).to_have_attribute("data-status", "cancelled")
    assert timeline_events(page, order_id) == [(1, "pending"), (2, "waiting"), (3, "cancelled")]
    expect(order_card).to_have_attribute("data-duplicates", "0")
    expect(page.locator("#api-status")).to_have_attribute("data-state", "up")
    shot(page, request, "after-restart")


def test_with_keys_on_the_page_sends_the_key_it_keeps(open_page, engine, redis_url, database_url, tmp_path, request):
    secret = new_secret()
    env = {"AUTH_ENABLED": "true", "API_KEYS": f"desk:user:{hash_key(secret)}"}
    # A second API with keys on, on the same Redis: the engine's workers execute what it accepts.
    with api_only(redis_url, database_url, tmp_path / "logs", **env) as keyed:
        page, watched = open_page(f"{keyed.api_url}/")
        expect(page.locator("#key-note")).to_have_text("this API requires a key")
        expect(page.locator("#history-message")).to_contain_text("enter an API key")
        submit_order(page, amount="0.25", slippageBps="300")
        expect(page.locator("#form-message")).to_contain_text("401")
        shot(page, request, "no-key")

        page.fill("#api-key", secret)
        page.click("#key-form button[type=submit]")
        expect(page.locator("#history-message")).not_to_contain_text("API key")
        submit_order(page, amount="0.25", slippageBps="300")
        order_id = accepted_order_id(page)
        expect(card(page, order_id)).to_have_attribute("data-status", "confirmed", timeout=30_000)
        # Followed with the key as each socket's first message: never in a URL (logs, history).
        assert watched.sockets_for(order_id) and not any("apiKey" in url for url in watched.sockets_for(order_id))
        shot(page, request, "with-key")

        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        expect(page.locator("#api-key")).to_have_value(secret)
        expect(card(page, order_id)).to_have_attribute("data-status", "confirmed")  # followed again after reload
