"""Garbage thrown at the three WebSocket paths of a real API process: each connection ends with a clean
close (1000, 4400, 4404, or 1009 for a message over WS_MAX_MESSAGE_BYTES), nothing is logged as an error,
and the open-WebSocket gauge and the event loop's task count on /metrics return to where they were."""

import asyncio
import contextlib
import time
import uuid

import httpx
import orjson
import pytest
from redis import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.api_process import api_only, asyncio_tasks, open_websockets, server_errors
from tests.support.ws import collect

SETTLE_TIMEOUT_S = 15
OVERSIZE = 100 * 1024  # over the default 64 KiB
FLOOD = 3000
CHURN = 300


@pytest.fixture(scope="module")
def api(redis_url, database_url, tmp_path_factory):
    Redis.from_url(redis_url).flushdb()
    with api_only(redis_url, database_url, tmp_path_factory.mktemp("ws-garbage")) as engine:
        yield engine


@pytest.fixture(scope="module")
async def http(api):
    async with httpx.AsyncClient(base_url=api.api_url, timeout=15) as client:
        yield client


@pytest.fixture(scope="module")
async def resting(http) -> str:
    """A limit order far from the market: no limit-worker runs, so its stream stays open and live."""
    body = {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": "1000000"}
    response = await http.post("/api/orders/execute", json=body)
    assert response.status_code == 200, response.text
    return response.json()["orderId"]


@pytest.fixture
async def baseline(api, http):
    """The gauge and task count before the test; after it, both must come back and the log stay clean."""
    await http.get("/health")  # the client's connection is up before anything is counted
    before = (await open_websockets(http), await asyncio_tasks(http))
    yield before
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while (now := (await open_websockets(http), await asyncio_tasks(http))) != before:
        assert time.monotonic() < deadline, f"open sockets and tasks {now}, were {before}"
        await asyncio.sleep(0.1)
    assert server_errors(api) == []


def live_paths(order_id: str) -> list[str]:
    return [f"/ws/orders/{order_id}", f"/api/orders/execute?orderId={order_id}", "/ws?userId=garbage-tester"]


def bad_paths(resting: str) -> list[tuple[str, int, str]]:
    return [
        ("/ws/orders/not-a-uuid", 4400, "invalid_order_id"),
        ("/ws/orders/" + "f" * 4000, 4400, "invalid_order_id"),
        ("/ws/orders/%00%ff", 4400, "invalid_order_id"),
        ("/api/orders/execute", 4400, "invalid_order_id"),
        ("/api/orders/execute?orderId=", 4400, "invalid_order_id"),
        ("/api/orders/execute?orderId=../../etc/passwd", 4400, "invalid_order_id"),
        (f"/ws/orders/{uuid.uuid4()}", 4404, "order_not_found"),
        (f"/api/orders/execute?orderId={uuid.uuid4()}", 4404, "order_not_found"),
        (f"/ws/orders/{resting}?after=-1", 4400, "invalid_after"),
        (f"/ws/orders/{resting}?after=abc", 4400, "invalid_after"),
        (f"/ws/orders/{resting}?after=1e3", 4400, "invalid_after"),
        (f"/ws/orders/{resting}?after=", 4400, "invalid_after"),
        (f"/ws/orders/{resting}?after=" + "9" * 100, 4400, "invalid_after"),
        (f"/api/orders/execute?orderId={resting}&after=-99999999999999999999", 4400, "invalid_after"),
        ("/ws", 4400, "invalid_user_id"),
        ("/ws?userId=", 4400, "invalid_user_id"),
        ("/ws?userId=" + "u" * 65, 4400, "invalid_user_id"),
    ]


async def test_bad_ids_and_bad_after_close_with_an_error_and_4400_or_4404(api, resting, baseline):
    for path, code, error in bad_paths(resting):
        messages, close_code = await collect(api.ws_url + path, timeout=10)
        assert close_code == code, path
        assert messages == [{"type": "error", "error": error, "message": messages[0]["message"]}], path


async def test_junk_frames_and_floods_are_ignored_and_the_stream_stays_usable(api, resting, baseline):
    for path in live_paths(resting):
        async with connect(api.ws_url + path) as socket:
            if "userId" not in path:  # an order stream replays first
                assert [orjson.loads(await socket.recv())["seq"] for _ in range(2)] == [1, 2]
            await socket.send("{{{{ not json")
            await socket.send(b"\x00\xff" * 500)
            await socket.send("")
            for i in range(FLOOD):
                await socket.send(f'{{"type":"subscribe","n":{i}}}' if i % 2 else bytes([i % 256]) * 64)
            pong = await socket.ping()
            await asyncio.wait_for(pong, 10)  # still served after the flood
        assert socket.close_code == 1000


async def test_a_message_over_the_size_limit_closes_with_1009(api, resting, baseline):
    for path in live_paths(resting):
        for junk in ("x" * OVERSIZE, b"\x01" * OVERSIZE):
            async with connect(api.ws_url + path) as socket:
                await socket.send(junk)
                with contextlib.suppress(ConnectionClosed):
                    async with asyncio.timeout(10):
                        async for _ in socket:
                            pass
            assert socket.close_code == 1009, path


async def test_abrupt_disconnects_mid_stream_leave_nothing_behind(api, resting, baseline):
    order_paths = live_paths(resting)[:2]
    sockets = [await connect(api.ws_url + path) for path in order_paths * 10]
    for socket in sockets[::2]:
        await socket.recv()  # mid-stream: the replay has begun
    sockets += [await connect(f"{api.ws_url}/ws?userId=abrupt-{i}") for i in range(10)]
    for socket in sockets:
        socket.transport.abort()  # no close frame, just gone


async def test_many_connects_and_disconnects(api, resting, baseline):
    paths = [*live_paths(resting), f"/ws/orders/{resting}?after=999999999", f"/ws/orders/{uuid.uuid4()}"]

    async def churn(i: int) -> None:
        socket = await connect(api.ws_url + paths[i % len(paths)])
        if i % 3 == 0:
            socket.transport.abort()
        else:
            await socket.close()

    async def half_handshake() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(api.env["API_PORT"]))
        writer.write(b"GET /ws/orders/" + resting.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        await writer.drain()
        writer.close()

    for start in range(0, CHURN, 50):
        await asyncio.gather(*(churn(i) for i in range(start, start + 50)), *(half_handshake() for _ in range(5)))
