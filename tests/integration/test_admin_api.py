"""The admin dead-letter routes and the backlog gauges, over HTTP against an in-process API on real Redis."""

import contextlib
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.api.app import create_app
from shared import redis_keys
from shared.auth.api_keys import KeyRing, Role
from tests.support.dead_letters import dead_letter, enqueue_execution, failed_dead_letter
from tests.support.orders import make_store, place_market_order

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def api(settings):
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=10) as client:
            yield client


async def test_list_show_replay_and_purge_dead_letters(redis, settings):
    order = await failed_dead_letter(redis)
    async with api(settings) as http:
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
    async with api(settings) as http:
        refused = await http.post(f"/api/admin/dlq/{gone.order_id}/replay")
        assert refused.status_code == 409 and refused.json()["error"] == "order_not_in_redis"

        batch = (await http.post("/api/admin/dlq/replay", params={"limit": 10})).json()
        assert batch["success"] is False and batch["replayed"] == 1 and batch["refused"] == 1
        by_order = {item["orderId"]: item for item in batch["results"]}
        assert by_order[str(replayable.order_id)]["action"] == "recreated"
        assert by_order[str(gone.order_id)]["error"] == "order_not_in_redis"

        purged = await http.delete(f"/api/admin/dlq/{gone.order_id}")
        assert purged.status_code == 200 and purged.json()["purged"] == 1


async def test_admin_routes_need_an_admin_key_when_auth_is_enabled(redis, settings):
    admin_secret, _ = await KeyRing(redis).create("ops", Role.ADMIN)
    user_secret, _ = await KeyRing(redis).create("trader", Role.USER)
    async with api(settings.model_copy(update={"auth_enabled": True})) as http:
        for method, path in (
            ("GET", "/api/admin/dlq"),
            ("GET", "/api/admin/dlq/00000000-0000-0000-0000-000000000000"),
            ("POST", "/api/admin/dlq/00000000-0000-0000-0000-000000000000/replay"),
            ("POST", "/api/admin/dlq/replay"),
            ("DELETE", "/api/admin/dlq?olderThanS=60"),
        ):
            anonymous = await http.request(method, path)
            assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized", path
            as_user = await http.request(method, path, headers={"Authorization": f"Bearer {user_secret}"})
            assert as_user.status_code == 403 and as_user.json()["error"] == "forbidden", path
        as_admin = await http.get("/api/admin/dlq", headers={"X-API-Key": admin_secret})
        assert as_admin.status_code == 200 and as_admin.json()["total"] == 0


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
        await redis.hset(f"{redis_keys.dramatiq_delayed()}.msgs", "retry-1", b"{}")

        after = gauges((await http.get("/metrics")).text)
        assert after[("engine_dead_letters", ())] == 2
        assert after[("engine_execution_queue_depth", (("queue", "ready"),))] == 2
        assert after[("engine_execution_queue_depth", (("queue", "delayed"),))] == 1
