"""An order followed over a real WebSocket, through real services, into PostgreSQL."""

import asyncio
import time
import uuid

from shared.domain import idempotency
from shared.domain.partitions import partition_of, scope_partition
from tests.e2e.conftest import E2E_PARTITIONS
from tests.support.orders import assert_gapless_and_legal
from tests.support.ws import collect

HAPPY_PATH = ["pending", "routing", "building", "submitted", "confirmed"]


async def submit(http, **fields) -> str:
    body = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5", **fields}
    response = await http.post("/api/orders/execute", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["success"] is True and payload["status"] == "pending" and payload["type"] == "market"
    assert payload["wsUrl"] == f"/ws/orders/{payload['orderId']}"
    return payload["orderId"]


async def test_an_order_streams_from_pending_to_confirmed_with_gapless_seq(engine, http):
    started = time.perf_counter()
    order_id = await submit(http, clientOrderId="client-1")
    messages, code = await collect(f"{engine.ws_url}/ws/orders/{order_id}")
    elapsed = time.perf_counter() - started
    print(f"end-to-end submit→confirmed: {elapsed * 1000:.0f} ms (SIM_LATENCY_SCALE=0.5)")
    assert code == 1000
    assert [m["status"] for m in messages] == HAPPY_PATH
    assert_gapless_and_legal(messages)
    assert all(m["type"] == "status" and m["orderId"] == order_id for m in messages)
    assert all(m["clientOrderId"] == "client-1" and m["orderType"] == "market" for m in messages)
    routing, building, submitted, confirmed = messages[1:]
    assert set(routing["quotes"]) == {"raydium", "meteora"} and routing["dex"] in routing["quotes"]
    assert building["transaction"]["instructions"][0] == "wrapSol"  # SOL in: wrapped for routing
    assert submitted["txHash"] and confirmed["txHash"] == submitted["txHash"]
    assert float(confirmed["executedPrice"]) > 0 and float(confirmed["amountOut"]) > 0
    assert confirmed["timestamp"].endswith("Z")


async def test_orders_spread_over_every_partition_and_each_one_streams_and_persists(engine, http):
    order_ids = [await submit(http) for _ in range(12)]
    assert {partition_of(order_id) for order_id in order_ids} == set(range(E2E_PARTITIONS))
    for key in ("retry-a", "retry-b", "retry-c"):  # a keyed order goes where its key says, and a retry finds it
        body = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "0.5"}
        keyed = {"Idempotency-Key": key}
        first, retry = [await http.post("/api/orders/execute", json=body, headers=keyed) for _ in range(2)]
        assert first.json()["orderId"] == retry.json()["orderId"] and retry.headers["idempotent-replayed"] == "true"
        assert partition_of(first.json()["orderId"]) == scope_partition(idempotency.scope(None, key), E2E_PARTITIONS)
        order_ids.append(first.json()["orderId"])
    for order_id in order_ids:
        messages, code = await collect(f"{engine.ws_url}/ws/orders/{order_id}")
        assert code == 1000 and [m["status"] for m in messages] == HAPPY_PATH, order_id
    deadline = time.monotonic() + 10
    while True:  # db-sync reads every partition's stream
        listed = {o["orderId"] for o in (await http.get("/api/orders", params={"limit": 500})).json()["orders"]}
        if set(order_ids) <= listed or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert set(order_ids) <= listed


async def test_replay_after_completion_on_both_paths_and_resume_after(engine, http):
    order_id = await submit(http)
    await collect(f"{engine.ws_url}/ws/orders/{order_id}")
    replay, code = await collect(f"{engine.ws_url}/api/orders/execute?orderId={order_id}")
    assert code == 1000 and [m["status"] for m in replay] == HAPPY_PATH
    resumed, code = await collect(f"{engine.ws_url}/ws/orders/{order_id}?after=3")
    assert code == 1000 and [m["seq"] for m in resumed] == [4, 5]
    nothing, code = await collect(f"{engine.ws_url}/ws/orders/{order_id}?after=5")
    assert code == 1000 and nothing == []


async def test_connecting_mid_flight_sees_every_event_once(engine, http):
    order_id = await submit(http)
    await asyncio.sleep(0.3)  # let the order get going before the socket opens
    messages, code = await collect(f"{engine.ws_url}/api/orders/execute?orderId={order_id}")
    assert code == 1000 and [m["status"] for m in messages] == HAPPY_PATH


async def test_unknown_and_malformed_order_ids_close_with_an_error(engine):
    messages, code = await collect(f"{engine.ws_url}/ws/orders/{uuid.uuid4()}")
    assert code == 4404 and messages[0]["type"] == "error"
    messages, code = await collect(f"{engine.ws_url}/ws/orders/not-a-uuid")
    assert code == 4400 and messages[0]["error"] == "invalid_order_id"
    messages, code = await collect(f"{engine.ws_url}/ws/orders/{uuid.uuid4()}?after=-1")
    assert code == 4400 and messages[0]["error"] == "invalid_after"


async def test_a_user_socket_streams_all_of_that_users_orders_and_only_theirs(engine, http):
    from websockets.asyncio.client import connect

    user = f"user-{uuid.uuid4().hex[:8]}"
    received = []
    async with connect(f"{engine.ws_url}/ws?userId={user}") as socket:
        await asyncio.sleep(0.2)  # the subscription is live once the handshake is done; be generous
        mine = [await submit(http, userId=user) for _ in range(2)]
        await submit(http, userId="somebody-else")
        async with asyncio.timeout(30):
            while sum(1 for m in received if m["status"] == "confirmed") < 2:
                import orjson

                received.append(orjson.loads(await socket.recv()))
    assert {m["orderId"] for m in received} == set(mine)
    for order_id in mine:
        assert [m["status"] for m in received if m["orderId"] == order_id] == HAPPY_PATH


async def test_many_concurrent_orders_all_confirm_with_gapless_streams(engine, http):
    order_ids = await asyncio.gather(*(submit(http, amount=f"{1 + i / 100:.2f}") for i in range(40)))
    results = await asyncio.gather(*(collect(f"{engine.ws_url}/ws/orders/{oid}", 60) for oid in order_ids))
    for messages, code in results:
        assert code == 1000
        assert [m["status"] for m in messages] == HAPPY_PATH
        assert_gapless_and_legal(messages)


async def test_history_comes_from_postgresql_once_db_sync_has_it(engine, http):
    user = f"history-{uuid.uuid4().hex[:8]}"
    order_id = await submit(http, userId=user)
    await collect(f"{engine.ws_url}/ws/orders/{order_id}")
    async with asyncio.timeout(15):
        while True:
            page = (await http.get("/api/orders", params={"userId": user})).json()
            if page["orders"] and page["orders"][0]["status"] == "confirmed":
                break
            await asyncio.sleep(0.1)
    [row] = page["orders"]
    assert row["orderId"] == order_id and row["txHash"] and row["amountOut"]
    alias = (await http.get("/api/orders/history", params={"userId": user, "status": "confirmed"})).json()
    assert [o["orderId"] for o in alias["orders"]] == [order_id]
    detail = (await http.get(f"/api/orders/{order_id}")).json()
    assert detail["status"] == "confirmed" and [e["seq"] for e in detail["events"]] == [1, 2, 3, 4, 5]


async def test_an_order_gone_from_redis_is_served_from_postgresql(engine, http, engine_redis_settings):
    from shared import redis_keys
    from shared.redis_client import redis_client

    order_id = await submit(http)
    live, _ = await collect(f"{engine.ws_url}/ws/orders/{order_id}")
    async with asyncio.timeout(15):
        while (await http.get("/api/orders", params={"status": "confirmed", "limit": 500})).json()["orders"][0][
            "orderId"
        ] != order_id:
            await asyncio.sleep(0.1)
    client = redis_client(engine_redis_settings)
    await client.delete(redis_keys.order(order_id), redis_keys.order_events(order_id))  # as retention would
    await client.aclose()
    detail = (await http.get(f"/api/orders/{order_id}")).json()
    assert detail["status"] == "confirmed" and detail["events"] == live
    replay, code = await collect(f"{engine.ws_url}/ws/orders/{order_id}?after=2")
    assert code == 1000 and replay == live[2:]
