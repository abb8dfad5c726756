"""The auto-pipelining client against a real Redis: one round trip per event-loop turn, yet every caller
gets its own reply or its own error, scripts survive a flushed script cache, and blocking commands wait
apart from the rest."""

import asyncio
import socket

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from shared.redis_client import AutoPipelineRedis, redis_client


@pytest.fixture
async def auto(redis_url, redis):  # `redis` flushes the database first
    client = redis_client(redis_url, auto_pipeline=True)
    sent: list[int] = []
    original = client._send_pipeline

    async def counting(batch):
        sent.append(len(batch))
        await original(batch)

    client._send_pipeline = counting
    client.pipelines_sent = sent
    yield client
    await client.aclose()


async def test_commands_issued_together_share_one_round_trip_and_each_gets_its_reply(auto):
    await asyncio.gather(*(auto.set(f"k{i}", i) for i in range(200)))
    values = await asyncio.gather(*(auto.get(f"k{i}") for i in range(200)))
    assert values == [str(i).encode() for i in range(200)]
    assert auto.pipelines_sent == [200, 200]


async def test_a_lone_command_goes_alone_and_results_keep_their_callbacks(auto):
    assert await auto.set("solo", "1") is True
    assert await auto.hgetall("missing") == {}
    assert await auto.exists("solo") == 1
    assert auto.pipelines_sent == []


async def test_one_callers_error_is_its_own(auto):
    await auto.set("text", "x")
    ok, wrong, also_ok = await asyncio.gather(
        auto.incr("counter"), auto.lpush("text", "y"), auto.get("text"), return_exceptions=True
    )
    assert ok == 1 and also_ok == b"x"
    assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)


async def test_scripts_are_reloaded_when_the_server_forgot_them(auto, redis):
    script = auto.register_script("return ARGV[1] .. KEYS[1]")
    assert await script(keys=["k"], args=["a"]) == b"ak"
    await redis.script_flush()
    assert await asyncio.gather(*(script(keys=[f"k{i}"], args=["b"]) for i in range(20))) == [
        f"bk{i}".encode() for i in range(20)
    ]


async def test_a_cancelled_caller_leaves_the_others_their_replies(auto):
    first = asyncio.ensure_future(auto.set("a", "1"))
    second = asyncio.ensure_future(auto.set("b", "2"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second is True
    assert await auto.get("b") == b"2"


async def test_a_blocking_read_does_not_hold_up_other_commands(auto, redis_url):
    reader = asyncio.ensure_future(auto.xread({"stream:none": "$"}, block=2000))
    await asyncio.sleep(0.05)
    assert await auto.set("while-blocked", "1") is True
    assert not reader.done()
    reader.cancel()


async def test_a_lost_server_fails_every_waiting_command():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = redis_client(f"redis://127.0.0.1:{port}/0", auto_pipeline=True, socket_connect_timeout=1)
    assert isinstance(client, AutoPipelineRedis)
    results = await asyncio.gather(*(client.get(f"k{i}") for i in range(5)), return_exceptions=True)
    assert all(isinstance(result, RedisConnectionError) for result in results)
    await client.aclose()
