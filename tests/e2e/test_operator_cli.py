"""The operator CLI against the whole engine (every service a real process): `order-engine submit`, `watch`,
`cancel`, `orders`, `quotes` and `health` run as subprocesses and talk to the API over HTTP and WebSocket."""

import asyncio
import uuid

import pytest

from tests.support.cli import cli_env, finish, order_engine, start_cli
from tests.support.orders import assert_gapless_and_legal
from tests.support.processes import free_port

MARKET_PATH = ["pending", "routing", "building", "submitted", "confirmed"]
RESTING_PATH = ["pending", "waiting", "triggered", "routing", "building", "submitted", "confirmed"]
#: A limit order that cannot trigger (SOL trades near 150 USDC).
UNREACHABLE = ("SOL", "USDC", "1", "--limit-price", "1000000")


@pytest.fixture(scope="module")
def env(engine):
    return cli_env(engine.api_url)


def events_of(run) -> list[dict]:
    return [line for line in run.json_lines() if line.get("type") == "status"]


def status_column(run) -> list[str]:
    """The status of each event line of the text display (`  3  12:00:00.123  building  attempt 1  …`)."""
    return [line.split()[2] for line in run.stdout.splitlines() if line[:3].strip().isdigit()]


async def read_json_line(process) -> dict:
    import orjson

    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
    assert line, "the watcher ended early"
    return orjson.loads(line)


async def test_submit_follows_a_market_order_to_confirmed_as_text_and_as_ndjson(env):
    key = f"cli-{uuid.uuid4()}"
    json_args = ("submit", "SOL", "USDC", "0.25", "--slippage", "0.03", "--client-order-id", "cli-json", "--json")
    text, as_json = await asyncio.gather(
        order_engine("submit", "SOL", "USDC", "1.5", "--slippage-bps", "300", "--user-id", "cli-text", env=env),
        order_engine(*json_args, "--idempotency-key", key, env=env),
    )
    assert text.returncode == 0, text
    lines = text.stdout.splitlines()
    assert "accepted: market: sell 1.5 SOL for USDC, slippage 300 bps" in lines[0]
    assert status_column(text) == MARKET_PATH
    routing = next(line for line in lines if " routing " in line)
    assert "attempt 1" in routing and "quotes raydium" in routing and "meteora" in routing
    assert "100%, impact " in routing
    assert " tx " in next(line for line in lines if " submitted " in line)
    assert " confirmed: 1.5 SOL → " in lines[-1] and " USDC at " in lines[-1] and "(tx " in lines[-1]

    assert as_json.returncode == 0, as_json
    accepted, *events = as_json.json_lines()
    assert accepted["type"] == "accepted" and accepted["orderType"] == "market"
    assert accepted["status"] == "pending" and accepted["idempotentReplayed"] is False
    assert [event["status"] for event in events] == MARKET_PATH
    assert_gapless_and_legal(events)
    assert {event["orderId"] for event in events} == {accepted["orderId"]}
    assert {event["clientOrderId"] for event in events} == {"cli-json"}
    routed, confirmed = events[1], events[-1]
    assert set(routed["quotes"]) == {"raydium", "meteora"} and routed["dex"] in routed["quotes"]
    assert confirmed["txHash"] and confirmed["executedPrice"] and confirmed["amountOut"]

    # The same Idempotency-Key and order: the same order, replayed to its end; another order: the API's 409.
    again, conflict = await asyncio.gather(
        order_engine(*json_args, "--idempotency-key", key, env=env),
        order_engine("submit", "SOL", "USDC", "9", "--idempotency-key", key, env=env),
    )
    assert again.returncode == 0, again
    assert again.json_lines()[0]["orderId"] == accepted["orderId"] and again.json_lines()[0]["idempotentReplayed"]
    assert events_of(again) == events
    assert conflict.returncode == 1 and "(HTTP 409 idempotency_conflict)" in conflict.stderr, conflict
    assert "this Idempotency-Key was used with a different body" in conflict.stderr


async def test_limit_and_sniper_orders_reach_their_end_states(env):
    limit, expiring, listing, liquidity = await asyncio.gather(
        order_engine("submit", "SOL", "USDC", "1", "--limit-price", "1", "--slippage-bps", "300", "--json", env=env),
        order_engine("submit", *UNREACHABLE, "--expires-in", "3s", "--json", env=env),
        order_engine("submit", "SOL", "USDC", "0.5", "--listing", "--slippage-bps", "300", "--json", env=env),
        order_engine("submit", "SOL", "USDC", "0.5", "--min-liquidity", "1000", "--slippage-bps", "300", env=env),
    )
    assert limit.returncode == 0, limit
    assert [e["status"] for e in events_of(limit)] == RESTING_PATH
    triggered = events_of(limit)[2]
    assert float(triggered["triggerPrice"]) >= 1 and triggered["limitPrice"] == "1"

    assert expiring.returncode == 8, expiring  # expired
    assert [e["status"] for e in events_of(expiring)] == ["pending", "waiting", "expired"]
    assert expiring.json_lines()[0]["orderType"] == "limit"

    # A pair listed from the start: the sniper worker's sweep finds the condition already met.
    assert listing.returncode == 0, listing
    assert [e["status"] for e in events_of(listing)] == RESTING_PATH
    assert events_of(listing)[2]["venueEvent"]["kind"] == "already_met"
    assert liquidity.returncode == 0, liquidity
    assert status_column(liquidity) == RESTING_PATH
    assert "resting until a pool holds 1000 USDC" in liquidity.stdout
    assert "its condition already held" in liquidity.stdout


async def test_a_resting_order_is_watched_live_cancelled_and_replayed_after_a_seq(env):
    placed = await order_engine("submit", *UNREACHABLE, "--no-wait", env=env)
    assert placed.returncode == 0, placed
    order_id = placed.stdout.strip()
    assert str(uuid.UUID(order_id)) == order_id  # --no-wait prints the id alone
    as_json = start_cli("watch", order_id, "--json", env=env)
    as_text = start_cli("watch", order_id, "--timeout", "60", env=env)
    # The watcher is streaming (the replay came) before the cancel: the cancelled event arrives live.
    assert [(await read_json_line(as_json))["status"] for _ in range(2)] == ["pending", "waiting"]
    await asyncio.sleep(0.5)  # the text watcher, started at the same time, is connected too by now

    cancelled = await order_engine("cancel", order_id, env=env)
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == f"order {order_id} cancelled", cancelled
    watched_json, watched_text = await finish(as_json), await finish(as_text)
    assert watched_json.returncode == 7, watched_json  # cancelled
    assert [line["status"] for line in watched_json.json_lines()] == ["cancelled"]  # after the two read above
    assert watched_text.returncode == 7, watched_text
    assert "limit: sell 1 SOL for USDC at 1000000 or better" in watched_text.stdout.splitlines()[0]
    assert status_column(watched_text) == ["pending", "waiting", "cancelled"]
    assert f"order {order_id} was cancelled" in watched_text.stderr

    again, after_two, after_all = await asyncio.gather(
        order_engine("cancel", order_id, env=env),
        order_engine("watch", order_id, "--after", "2", "--json", env=env),
        order_engine("watch", order_id, "--after", "3", env=env),
    )
    assert again.returncode == 1 and "(HTTP 409 not_cancellable)" in again.stderr, again
    assert after_two.returncode == 7 and [e["seq"] for e in after_two.json_lines()] == [3], after_two
    assert after_all.returncode == 7 and status_column(after_all) == [], after_all


async def test_watch_resumes_after_the_api_restarts_without_missing_or_repeating_an_event(engine, env):
    placed = await order_engine("submit", *UNREACHABLE, "--no-wait", env=env)
    order_id = placed.stdout.strip()
    watcher = start_cli("watch", order_id, "--json", env=env)
    assert [(await read_json_line(watcher))["seq"] for _ in range(2)] == [1, 2]
    engine.replica("api").kill()  # the socket drops without a close frame
    await asyncio.to_thread(engine.restart, "api")
    cancelled = await order_engine("cancel", order_id, env=env)
    assert cancelled.returncode == 0, cancelled
    rest = await finish(watcher)
    assert rest.returncode == 7, rest
    assert [(line["seq"], line["status"]) for line in rest.json_lines()] == [(3, "cancelled")]


async def test_history_lists_filters_and_pages(env, http):
    user = f"cli-{uuid.uuid4().hex[:12]}"
    amounts = ("0.1", "0.2", "0.3")
    placed = await asyncio.gather(
        *(order_engine("submit", "SOL", "USDC", amount, "--user-id", user, "--no-wait", env=env) for amount in amounts)
    )
    assert all(run.returncode == 0 for run in placed), placed
    async with asyncio.timeout(20):  # db-sync has persisted the three terminal events
        while (await http.get("/api/orders", params={"userId": user, "status": "confirmed"})).json()["count"] < 3:
            await asyncio.sleep(0.1)

    table, first, every, failed, limits, bad_cursor = await asyncio.gather(
        order_engine("orders", "--user-id", user, "--token-in", "sol", env=env),
        order_engine("orders", "--user-id", user, "--limit", "2", "--json", env=env),
        order_engine("orders", "--user-id", user, "--limit", "1", "--all", "--json", env=env),
        order_engine("orders", "--user-id", user, "--status", "failed", env=env),
        order_engine("orders", "--user-id", user, "--type", "limit", "--json", env=env),
        order_engine("orders", "--cursor", "garbage!", env=env),
    )
    assert table.returncode == 0, table
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["CREATED", "ORDER", "ID", "TYPE"] and "AMOUNT" in header
    assert len(rows) == 3 and all("market" in row and "confirmed" in row and "SOL-USDC" in row for row in rows)
    page = first.json()
    assert first.returncode == 0 and page["count"] == 2 and page["nextCursor"], first
    next_page = ("orders", "--user-id", user, "--limit", "2", "--cursor", page["nextCursor"], "--json")
    rest, hint = await asyncio.gather(
        order_engine(*next_page, env=env), order_engine("orders", "--user-id", user, "--limit", "2", env=env)
    )
    assert rest.returncode == 0 and rest.json()["count"] == 1 and rest.json()["nextCursor"] is None, rest
    history = page["orders"] + rest.json()["orders"]
    assert sorted(o["amount"] for o in history) == list(amounts)
    assert [o["createdAt"] for o in history] == sorted((o["createdAt"] for o in history), reverse=True)
    assert [row.split()[5] for row in rows] == [o["amount"] for o in history]  # the table too: newest first
    assert hint.stdout.splitlines()[-1] == (
        f"more: order-engine orders --user-id {user} --limit 2 --cursor {page['nextCursor']}"
    )

    assert every.returncode == 0 and every.json()["count"] == 3 and every.json()["nextCursor"] is None, every
    assert failed.returncode == 0 and failed.stdout.strip() == "no orders", failed
    assert limits.returncode == 0 and limits.json()["orders"] == [], limits
    assert bad_cursor.returncode == 1 and "(HTTP 400 invalid_cursor)" in bad_cursor.stderr, bad_cursor


async def test_quotes_and_health(env, http):
    async with asyncio.timeout(10):
        while (await http.get("/api/quotes/SOL-USDC")).status_code != 200:
            await asyncio.sleep(0.1)
    one, one_json, every, unknown, unquoted, health = await asyncio.gather(
        order_engine("quotes", "SOL-USDC", env=env),
        order_engine("quotes", "sol-usdc", "--json", env=env),
        order_engine("quotes", "--json", env=env),
        order_engine("quotes", "SOL-NOPE", env=env),
        order_engine("quotes", "USDT-JUP", env=env),
        order_engine("health", "--json", env=env),
    )
    assert one.returncode == 0, one
    header, *rows = one.stdout.splitlines()
    assert header.split() == ["PAIR", "VENUE", "PRICE", "MID", "FEE", "LIQUIDITY", "AGE"]
    assert [row.split()[1] for row in rows] == ["raydium", "meteora", "BEST"]
    assert all(row.startswith("SOL-USDC") and " ms" in row for row in rows)

    body = one_json.json()
    assert body["pair"] == "SOL-USDC" and set(body["venues"]) == {"raydium", "meteora"}
    assert body["best"]["dex"] in body["venues"] and body["best"]["ageMs"] >= 0
    assert every.returncode == 0 and "SOL-USDC" in {quoted["pair"] for quoted in every.json()["pairs"]}, every
    assert unknown.returncode == 1 and "unknown token 'NOPE'" in unknown.stderr, unknown
    assert "(HTTP 400 unknown_token)" in unknown.stderr
    assert unquoted.returncode == 3 and "(HTTP 404 no_quotes)" in unquoted.stderr, unquoted

    assert health.returncode == 0, health  # the text form: tests/integration/test_cli_up_and_keys.py
    report = health.json()
    assert report["ok"] is True and report["ready"]["postgres"] == report["ready"]["redis"] == "ok"
    assert report["health"]["httpStatus"] == report["ready"]["httpStatus"] == 200


async def test_bad_input_unknown_orders_timeouts_and_an_unreachable_api_are_clear_errors(env):
    dead = f"http://127.0.0.1:{free_port()}"
    random_id = str(uuid.uuid4())
    runs = await asyncio.gather(
        order_engine("submit", "SOL", "NOPE", "1", env=env),
        order_engine("submit", "SOL", "USDC", "1", "--slippage-bps", "9000", "--no-check", "--json", env=env),
        order_engine("submit", "USDT", "JUP", "1", "--limit-price", "1", env=env),
        order_engine("submit", "SOL", "USDC", "1", "--listing", "--min-liquidity", "5", env=env),
        order_engine("watch", random_id, env=env),
        order_engine("cancel", random_id, "--json", env=env),
        order_engine("watch", "not-an-id", env=env),
        order_engine("submit", *UNREACHABLE, "--timeout", "1", "--json", env=env),
        order_engine("health", "--api", dead, env=env),
        order_engine("orders", "--json", env=cli_env(dead)),
    )
    checked, unchecked, not_streamed, both, unknown, cancel, malformed, slow, down, down_json = runs

    # Checked here with the API's own rules (tests/unit/test_cli_api_commands.py compares them): nothing sent.
    assert checked.returncode == 1 and "unknown token 'NOPE'" in checked.stderr, checked
    assert "checked here, not sent" in checked.stderr and checked.stdout == ""
    # Sent anyway: the API's answer, as NDJSON for scripts.
    assert unchecked.returncode == 1, unchecked
    [error] = unchecked.json_lines()
    assert error["type"] == "error" and error["error"] == "less_than_equal" and error["status"] == 400
    assert "slippageBps: Input should be less than or equal to 5000 (HTTP 400 less_than_equal)" in unchecked.stderr
    # What only the API knows (which pairs it streams) comes from the API.
    assert not_streamed.returncode == 1 and "(HTTP 400 pair_not_streamed)" in not_streamed.stderr, not_streamed
    assert "no price stream for USDT-JUP" in not_streamed.stderr
    assert both.returncode == 2, both

    assert unknown.returncode == 3 and f"no order {random_id} (HTTP 404 order_not_found)" in unknown.stderr, unknown
    assert cancel.returncode == 3 and cancel.json()["error"] == "order_not_found", cancel
    assert malformed.returncode == 2, malformed

    assert slow.returncode == 5, slow  # timed out; the order rests on
    accepted, *events, timed_out = slow.json_lines()
    assert [e["status"] for e in events] == ["pending", "waiting"]
    assert timed_out["type"] == "error" and timed_out["error"] == "timeout"
    assert (await order_engine("cancel", accepted["orderId"], env=env)).returncode == 0

    assert down.returncode == 4 and f"cannot reach the API at {dead}" in down.stderr, down
    assert down_json.returncode == 4 and down_json.json()["error"] == "unavailable", down_json
