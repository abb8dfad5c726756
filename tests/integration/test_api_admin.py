"""The admin dead-letter routes and the backlog gauges, over HTTP against an in-process API on real Redis.

The admin routes need an admin API key whatever the settings: with AUTH_ENABLED off they all answer 403
`admin_disabled` and change nothing, while the order routes stay open (the contract)."""

import contextlib
import re
import time

import httpx
import pytest
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families

from services.api.app import AUTH_DISABLED_WARNING, create_app
from services.api.auth import ADMIN_DISABLED, ADMIN_DISABLED_MESSAGE, ANONYMOUS
from shared import redis_keys
from shared.auth.api_keys import KeyRing, Role
from shared.execution.dead_letters import DeadLetters
from shared.settings import Settings
from shared.venues.ledger import RedisLedger
from tests.support.dead_letters import dead_letter, enqueue_execution, failed_dead_letter
from tests.support.orders import make_store, place_market_order

#: Every admin operation the app serves, read from its OpenAPI document: a route added later is covered
#: without edits.
ADMIN_ROUTES = sorted(
    (method.upper(), path)
    for path, operations in create_app(Settings()).openapi()["paths"].items()
    if path.startswith("/api/admin")
    for method in operations
)
#: Valid for every admin route (the others ignore them): were a route let through, it would act (purge all).
ADMIN_QUERY = {"olderThanS": 0, "limit": 1000}


@contextlib.asynccontextmanager
async def api(settings, **headers):
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers, timeout=10) as client:
            yield client


@contextlib.asynccontextmanager
async def admin_api(redis, settings):
    """The API with keys enabled, every request sent with an admin key (the only way into the admin routes)."""
    secret, _ = await KeyRing(redis).create("ops", Role.ADMIN)
    async with api(settings.model_copy(update={"auth_enabled": True}), authorization=f"Bearer {secret}") as http:
        yield http


def concrete(path: str, order_id) -> str:
    return re.sub(r"\{[^}]+\}", str(order_id), path)


async def snapshot(redis) -> dict[bytes, bytes]:
    """Every key and its serialized value, but the rate limiter's counters (each request moves them)."""
    keys = [key async for key in redis.scan_iter() if not key.startswith(redis_keys.RATE_LIMIT_PREFIX.encode())]
    return {key: await redis.dump(key) for key in sorted(keys)}


def test_the_admin_routes_are_all_found():
    expected = {
        ("GET", "/api/admin/dlq"),
        ("GET", "/api/admin/dlq/{order_id}"),
        ("POST", "/api/admin/dlq/replay"),
        ("POST", "/api/admin/dlq/{order_id}/replay"),
        ("DELETE", "/api/admin/dlq"),
        ("DELETE", "/api/admin/dlq/{order_id}"),
    }
    assert expected <= set(ADMIN_ROUTES), ADMIN_ROUTES


def test_the_anonymous_caller_sees_every_order_but_may_not_administer():
    assert ANONYMOUS.sees_every_order and ANONYMOUS.scope is None and ANONYMOUS.may_see("someone")
    assert not ANONYMOUS.may_administer


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_with_auth_disabled_every_admin_route_is_403_and_changes_nothing(redis, settings, method, path):
    order = await failed_dead_letter(redis)
    admin_secret, _ = await KeyRing(redis).create("ops", Role.ADMIN)
    async with api(settings) as http:
        before = await snapshot(redis)
        # Even an admin key: with keys disabled it is not looked at, and nothing can open these routes.
        for headers in ({}, {"Authorization": f"Bearer {admin_secret}"}):
            response = await http.request(method, concrete(path, order.order_id), params=ADMIN_QUERY, headers=headers)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json() == {
                "success": False,
                "error": ADMIN_DISABLED,
                "message": ADMIN_DISABLED_MESSAGE,
                "details": [],
            }
        # Refused before its parameters are read: a bad one does not turn the 403 into a 400.
        malformed = await http.request(method, concrete(path, "not-a-uuid"), params={"olderThanS": -1, "limit": 0})
        assert malformed.status_code == 403 and malformed.json()["error"] == ADMIN_DISABLED

        assert await snapshot(redis) == before
        dead_letters = DeadLetters(redis, make_store(redis), RedisLedger(redis))
        assert await dead_letters.count() == 1 and (await dead_letters.show(order.order_id))["deadLetters"]
        # The order routes stay open, and the anonymous caller still sees every order.
        shown = await http.get(f"/api/orders/{order.order_id}")
        assert shown.status_code == 200 and shown.json()["status"] == "failed"


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_with_auth_enabled_every_admin_route_needs_an_admin_key(redis, settings, method, path):
    order = await failed_dead_letter(redis)
    admin_secret, _ = await KeyRing(redis).create("ops", Role.ADMIN)
    user_secret, _ = await KeyRing(redis).create("trader", Role.USER)
    url = concrete(path, order.order_id)
    async with api(settings.model_copy(update={"auth_enabled": True})) as http:
        anonymous = await http.request(method, url, params=ADMIN_QUERY)
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized", path
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        as_user = await http.request(
            method, url, params=ADMIN_QUERY, headers={"Authorization": f"Bearer {user_secret}"}
        )
        assert as_user.status_code == 403 and as_user.json()["error"] == "forbidden", path
        assert await DeadLetters(redis, make_store(redis), RedisLedger(redis)).count() == 1
        as_admin = await http.request(method, url, params=ADMIN_QUERY, headers={"X-API-Key": admin_secret})
        assert as_admin.status_code == 200, (method, path, as_admin.text)


async def test_the_api_warns_at_start_up_when_auth_is_disabled(settings):
    warnings = []
    sink = logger.add(lambda message: warnings.append(message.record["message"]), level="WARNING")
    try:
        async with api(settings):
            pass
        async with api(settings.model_copy(update={"auth_enabled": True})):
            pass
    finally:
        logger.remove(sink)
    assert warnings.count(AUTH_DISABLED_WARNING) == 1, warnings


async def test_list_show_replay_and_purge_dead_letters(redis, settings):
    order = await failed_dead_letter(redis)
    async with admin_api(redis, settings) as http:
        listed = (await http.get("/api/admin/dlq")).json()
        assert listed["total"] == 1 and listed["deadLetters"][0]["orderId"] == str(order.order_id)
        assert listed["deadLetters"][0]["status"] == "failed"

        shown = (await http.get(f"/api/admin/dlq/{order.order_id}")).json()
        assert [e["status"] for e in shown["events"]] == ["pending", "failed"]

        first = await http.post(f"/api/admin/dlq/{order.order_id}/replay")
        second = await http.post(f"/api/admin/dlq/{order.order_id}/replay")
        assert first.status_code == second.status_code == 200
        assert first.json()["action"] == "recreated" and not first.json()["alreadyReplayed"]
        assert second.json()["alreadyReplayed"] and second.json()["newOrderId"] == first.json()["newOrderId"]
        new_order = (await http.get(f"/api/orders/{first.json()['newOrderId']}")).json()
        assert new_order["status"] == "pending" and new_order["events"][0]["replayOf"] == str(order.order_id)
        assert (await http.get("/api/admin/dlq")).json()["total"] == 0

        missing = await http.post("/api/admin/dlq/00000000-0000-0000-0000-000000000000/replay")
        assert missing.status_code == 404 and missing.json()["error"] == "dead_letter_not_found"
        assert missing.json()["success"] is False
        assert (await http.get("/api/admin/dlq/not-a-uuid")).status_code == 400

        old = await place_market_order(make_store(redis))
        await dead_letter(redis, old.order_id, at_ms=int(time.time() * 1000) - 3_600_000)
        assert (await http.delete("/api/admin/dlq", params={"olderThanS": 7200})).json()["purged"] == 0
        assert (await http.delete("/api/admin/dlq", params={"olderThanS": 60})).json()["purged"] == 1


async def test_replay_all_reports_each_order_and_refusals_are_409(redis, settings):
    replayable = await failed_dead_letter(redis)
    gone = await place_market_order(make_store(redis))
    await dead_letter(redis, gone.order_id)
    await redis.delete(redis_keys.order(gone.order_id))  # its record expired from Redis
    async with admin_api(redis, settings) as http:
        refused = await http.post(f"/api/admin/dlq/{gone.order_id}/replay")
        assert refused.status_code == 409 and refused.json()["error"] == "order_not_in_redis"

        batch = (await http.post("/api/admin/dlq/replay", params={"limit": 10})).json()
        assert batch["success"] is False and batch["replayed"] == 1 and batch["refused"] == 1
        by_order = {item["orderId"]: item for item in batch["results"]}
        assert by_order[str(replayable.order_id)]["action"] == "recreated"
        assert by_order[str(gone.order_id)]["error"] == "order_not_in_redis"

        purged = await http.delete(f"/api/admin/dlq/{gone.order_id}")
        assert purged.status_code == 200 and purged.json()["purged"] == 1


def gauges(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_read_queue_and_dead_letter_depth_at_scrape_time(redis, settings):
    async with api(settings) as http:
        before = gauges((await http.get("/metrics")).text)
        assert before[("engine_dead_letters", ())] == 0
        assert before[("engine_execution_queue_depth", (("queue", "ready"),))] == 0

        await failed_dead_letter(redis)
        await failed_dead_letter(redis)
        waiting = await place_market_order(make_store(redis))
        await enqueue_execution(redis, waiting.order_id)  # a second message: the ready depth is 2
        await redis.hset(f"{redis_keys.dramatiq_delayed(0)}.msgs", "retry-1", b"{}")

        after = gauges((await http.get("/metrics")).text)
        assert after[("engine_dead_letters", ())] == 2
        assert after[("engine_execution_queue_depth", (("queue", "ready"),))] == 2
        assert after[("engine_execution_queue_depth", (("queue", "delayed"),))] == 1
