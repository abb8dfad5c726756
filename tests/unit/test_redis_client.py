"""hiredis command packing gives the bytes redis-py's own packer gives, and refuses what it refuses."""

import pytest
from redis.asyncio.connection import Connection
from redis.crc import key_slot
from redis.exceptions import DataError

from shared.redis_client import redis_client
from shared.redis_packing import HiredisTcpConnection, HiredisUnixConnection

COMMANDS = [
    ("SET", "key", "value"),
    ("EVALSHA", "a" * 40, 2, "order:1", b"order:1:events", 0, 15_000, "", b"\x00\xff raw bytes"),
    ("HSET", "h", "price", "123.456000000001", "name", "ünïcødé €"),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", b"x"),
    ("SET", "big", "x" * 100_000),
    ("LPUSH", "l", memoryview(b"view"), bytearray(b"array")),
    ("INCRBYFLOAT", "n", 1.5),
    ("ZADD", "z", -3, "m"),
]


def _packed(connection, command) -> bytes:
    return b"".join(bytes(chunk) for chunk in connection.pack_command(*command))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_hiredis_packing_matches_the_python_packer(command):
    assert _packed(HiredisTcpConnection(), command) == _packed(Connection(), command)


def test_values_redis_cannot_store_are_refused_as_before():
    for connection in (HiredisTcpConnection(), Connection()):
        with pytest.raises(DataError):
            connection.pack_command("SET", "key", None)


def test_every_url_scheme_gets_a_hiredis_connection():
    assert redis_client("redis://127.0.0.1:1/0").connection_pool.connection_class is HiredisTcpConnection
    assert redis_client("unix:///tmp/redis.sock").connection_pool.connection_class is HiredisUnixConnection


# --- where Redis is: REDIS_URL's server, or the master a set of sentinels names ----------------------------
SENTINELS = "10.0.0.1:26379, 10.0.0.2:26380,[::1]:26381"


def _sentinel_settings(**overrides):
    from shared.settings import Settings

    options = {
        "redis_url": "redis://engine:s3cret@ignored.example:6379/2",
        "redis_sentinels": SENTINELS,
        "redis_sentinel_master": "engine-master",
        "redis_sentinel_password": "sentinels-own",
    }
    return Settings(**{**options, **overrides})


def test_settings_read_the_sentinels_and_refuse_a_malformed_one():
    from pydantic import ValidationError

    from shared.settings import Settings

    assert _sentinel_settings().redis_sentinel_addresses == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26381)]
    assert Settings().redis_sentinel_addresses == []
    for bad in ("10.0.0.1", "10.0.0.1:port", ":26379", "10.0.0.1:0", "10.0.0.1:70000"):
        with pytest.raises(ValidationError, match="sentinel is host:port"):
            Settings(redis_sentinels=bad)


def test_with_sentinels_every_asyncio_client_is_a_master_for_client_with_the_urls_credentials():
    from redis.asyncio.sentinel import SentinelConnectionPool

    from shared.redis_client import AutoPipelineRedis
    from shared.redis_sentinel import (
        BlockingSentinelConnectionPool,
        HiredisSentinelConnection,
        HiredisSentinelSslConnection,
    )

    settings = _sentinel_settings()
    plain = redis_client(settings)
    pool = plain.connection_pool
    assert type(pool) is SentinelConnectionPool and pool.is_master and pool.service_name == "engine-master"
    assert pool.connection_class is HiredisSentinelConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("engine", "s3cret", 2)
    assert "host" not in kwargs  # the sentinels say where
    manager = pool.sentinel_manager
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in manager.sentinels] == settings.redis_sentinel_addresses  # fmt: skip
    assert all(s.connection_pool.connection_kwargs["password"] == "sentinels-own" for s in manager.sentinels)

    bounded = redis_client(settings, max_connections=7, wait_for_connection_s=3, auto_pipeline=True)
    assert isinstance(bounded, AutoPipelineRedis)
    assert isinstance(bounded.connection_pool, BlockingSentinelConnectionPool)
    assert (bounded.connection_pool.max_connections, bounded.connection_pool.timeout) == (7, 3)

    reader = redis_client(settings, single_connection=True)
    assert reader.single_connection_client and isinstance(reader.connection_pool, SentinelConnectionPool)

    tls = redis_client(_sentinel_settings(redis_url="rediss://engine:s3cret@x:6379/0"))
    assert tls.connection_pool.connection_class is HiredisSentinelSslConnection


def test_with_sentinels_the_blocking_clients_the_broker_and_the_gauges_are_master_for_clients_too():
    from redis.sentinel import SentinelConnectionPool

    from shared.execution.broker import build_broker
    from shared.observability.redis_gauges import RedisGauges
    from shared.redis_client import sync_redis_client

    settings = _sentinel_settings()
    for client in (sync_redis_client(settings), build_broker(settings).client, RedisGauges(settings, []).client):
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "engine-master"
        assert pool.connection_kwargs["password"] == "s3cret"
    without = _sentinel_settings(redis_sentinels="")
    assert not isinstance(build_broker(without).client.connection_pool, SentinelConnectionPool)


def test_the_location_shown_in_messages_never_holds_a_password():
    from shared.redis_client import redis_location

    assert "s3cret" not in redis_location(_sentinel_settings())
    assert "engine-master" in redis_location(_sentinel_settings())
    assert redis_location("redis://admin:pw@127.0.0.1:6379/0") == "redis://admin:***@127.0.0.1:6379/0"
    assert redis_location("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


# --- READONLY (a client still on a demoted master) at each layer: "try again", never a crash or a 500 ------
READONLY = "READONLY You can't write against a read only replica."


def test_readonly_is_an_outage_for_the_api_the_cli_and_the_service_loops():
    import asyncio

    from redis.exceptions import ReadOnlyError

    from services.api.errors import response_for
    from services.cli.errors import CliError, ExitCode
    from services.cli.runtime import run_with_redis
    from shared.observability.probes import Heartbeat
    from shared.service import keep_running

    answer = response_for(ReadOnlyError(READONLY), "POST", "/api/orders/execute")
    assert answer.status_code == 503 and answer.headers["Retry-After"]

    async def refused(_redis):
        raise ReadOnlyError(READONLY)

    with pytest.raises(CliError) as raised:
        run_with_redis(_sentinel_settings(redis_sentinels=""), refused)
    assert raised.value.exit_code is ExitCode.UNAVAILABLE  # try again, as for Redis not answering

    async def loop_through_two_refusals():
        rounds, stop, alive = [], asyncio.Event(), Heartbeat("loop", 10)

        async def step():
            rounds.append(1)
            if len(rounds) <= 2:
                raise ReadOnlyError(READONLY)
            stop.set()

        await keep_running(step, alive=alive, stop=stop, outage=None)
        return len(rounds), alive.verdict(0)

    assert asyncio.run(loop_through_two_refusals()) == (3, (True, "ok"))


# --- a Redis Cluster: a router over one client per primary, and blocking clients bound to a slot -------------
def test_with_a_cluster_every_client_follows_the_slot_map_and_sentinels_are_refused():
    from pydantic import ValidationError

    from shared.redis_client import sync_redis_client
    from shared.redis_cluster import ClusterRedis
    from shared.redis_slot_client import SlotPrimaryPool
    from shared.settings import Settings

    settings = Settings(redis_url="redis://:pw@10.0.0.9:7000/0", redis_cluster=True)
    asyncio_client = redis_client(settings, auto_pipeline=True)
    assert isinstance(asyncio_client, ClusterRedis) and asyncio_client.seed_url == settings.redis_url
    bound = sync_redis_client(settings, slot_of="dramatiq:{p2}")
    assert isinstance(bound.connection_pool, SlotPrimaryPool)
    assert bound.connection_pool.slot == key_slot(b"p2") and bound.connection_pool.slots.seeds[0] == ("10.0.0.9", 7000)
    with pytest.raises(ValidationError, match="exclude each other"):
        Settings(redis_cluster=True, redis_sentinels="10.0.0.1:26379")
