"""`order-engine` as an operator runs it: a real process against a real Redis, text and --json output."""

import asyncio
import os
import subprocess
import sys

import orjson
import pytest

from shared import redis_keys
from shared.auth.api_keys import KeyRing, hash_key
from tests.support.dead_letters import dead_letter, failed_dead_letter
from tests.support.orders import make_store, place_market_order
from tests.support.processes import ROOT, free_port


def cli_runner(redis_url: str):
    async def order_engine(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
        def run() -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "services.cli", *args],
                cwd=ROOT,
                env={**os.environ, "REDIS_URL": redis_url, "LOG_LEVEL": "INFO", **env},
                input=stdin,
                capture_output=True,
                text=True,
                timeout=60,
            )

        return await asyncio.to_thread(run)

    return order_engine


@pytest.fixture
def order_engine(redis_url):
    return cli_runner(redis_url)


async def test_dlq_list_show_replay_and_purge(redis, order_engine):
    empty = await order_engine("dlq", "list")
    assert empty.returncode == 0 and empty.stdout.strip() == "no dead letters"
    order = await failed_dead_letter(redis)

    listed = await order_engine("dlq", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:3] == ["ORDER", "ID", "DEAD-LETTERED"]
    assert row.startswith(str(order.order_id)) and "failed" in row and "SOL-USDC" in row
    as_json = orjson.loads((await order_engine("dlq", "list", "--json")).stdout)
    assert as_json["total"] == 1 and as_json["deadLetters"][0]["lastError"].startswith("venue_unavailable")

    shown = await order_engine("dlq", "show", str(order.order_id))
    assert shown.returncode == 0 and "pending" in shown.stdout and "gave up after 3 attempts" in shown.stdout
    shown_json = orjson.loads((await order_engine("dlq", "show", str(order.order_id), "--json")).stdout)
    assert [e["status"] for e in shown_json["events"]] == ["pending", "failed"]

    replayed = await order_engine("dlq", "replay", str(order.order_id), "--json")
    assert replayed.returncode == 0, replayed.stderr
    first = orjson.loads(replayed.stdout)
    assert first["action"] == "recreated" and first["newOrderId"]
    again = await order_engine("dlq", "replay", str(order.order_id))
    assert again.returncode == 0 and f"replayed as new order {first['newOrderId']}" in again.stdout
    assert "already replayed" in again.stdout
    assert f"orderId={order.order_id}" in replayed.stderr  # the audit line names the order

    missing = await order_engine("dlq", "show", "00000000-0000-0000-0000-000000000000", "--json")
    assert missing.returncode == 3 and orjson.loads(missing.stdout)["error"] == "dead_letter_not_found"
    assert "error: no dead letter" in missing.stderr

    other = await place_market_order(make_store(redis))
    await dead_letter(redis, other.order_id)
    purged = await order_engine("dlq", "purge", str(other.order_id))
    assert purged.returncode == 0 and purged.stdout.strip() == "purged 1 dead letters"
    assert (await order_engine("dlq", "purge", "--older-than", "1d")).stdout.strip() == "purged 0 dead letters"


async def test_dlq_replay_all_and_usage_errors(redis, order_engine):
    first, second = await failed_dead_letter(redis), await failed_dead_letter(redis)
    gone = await place_market_order(make_store(redis))
    await dead_letter(redis, gone.order_id)
    await redis.delete(redis_keys.order(gone.order_id))

    batch = await order_engine("dlq", "replay", "--all", "--json")
    assert batch.returncode == 1  # one of them was refused
    items = {item["orderId"]: item for item in orjson.loads(batch.stdout)}
    assert items[str(first.order_id)]["action"] == items[str(second.order_id)]["action"] == "recreated"
    assert items[str(gone.order_id)]["error"] == "order_not_in_redis"

    refused = await order_engine("dlq", "replay", str(gone.order_id))
    assert refused.returncode == 1 and "not replayed (order_not_in_redis)" in refused.stderr

    assert (await order_engine("dlq", "replay")).returncode == 2
    assert (await order_engine("dlq", "replay", str(gone.order_id), "--all")).returncode == 2
    assert (await order_engine("dlq", "show", "not-a-uuid")).returncode == 2
    assert (await order_engine("dlq", "purge", "--older-than", "soon")).returncode == 2


async def test_keys_create_list_revoke_and_hash_never_store_or_log_the_secret(redis, order_engine):
    created = await order_engine("keys", "create", "ops", "--admin")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("oek_") and "shown only once" in created.stderr
    assert secret not in created.stderr
    key = await KeyRing(redis).find(secret)
    assert key is not None and key.is_admin and key.name == "ops"
    stored = await redis.hgetall(redis_keys.API_KEYS)
    assert list(stored) == [hash_key(secret).encode()] and secret.encode() not in b"".join(stored.values())

    user = orjson.loads((await order_engine("keys", "create", "trader", "--json")).stdout)
    assert user["role"] == "user" and user["secret"].startswith("oek_")

    configured = f"ci:user:{'a' * 64}"
    listed = await order_engine("keys", "list", "--json", API_KEYS=configured)
    assert {(k["name"], k["role"], k["source"]) for k in orjson.loads(listed.stdout)} == {
        ("ci", "user", "settings"),
        ("ops", "admin", "redis"),
        ("trader", "user", "redis"),
    }
    text = (await order_engine("keys", "list")).stdout
    assert "ops" in text and secret not in text and hash_key(secret) not in text

    revoked = await order_engine("keys", "revoke", user["keyId"])
    assert revoked.returncode == 0 and f"revoked {user['keyId']} (trader)" in revoked.stdout
    assert await KeyRing(redis).find(user["secret"]) is None
    assert (await order_engine("keys", "revoke", "trader")).returncode == 3
    settings_key = await order_engine("keys", "revoke", "ci", API_KEYS=configured)
    assert settings_key.returncode == 1 and "API_KEYS" in settings_key.stderr

    hashed = await order_engine("keys", "hash", stdin=secret + "\n")
    assert hashed.returncode == 0 and hashed.stdout.strip() == hash_key(secret)
    entry = await order_engine("keys", "hash", "--name", "ops", "--admin", stdin=secret)
    assert entry.stdout.strip() == f"ops:admin:{hash_key(secret)}"
    not_a_key = await order_engine("keys", "hash", stdin="hunter2")
    assert not_a_key.returncode == 1 and "hunter2" not in not_a_key.stderr + not_a_key.stdout

    for result in (created, listed, revoked, hashed, entry):
        assert secret not in result.stderr


async def test_an_unreachable_redis_is_a_clear_error_without_its_password():
    order_engine = cli_runner(f"redis://admin:s3cret@127.0.0.1:{free_port()}/0")
    result = await order_engine("dlq", "list")
    assert result.returncode == 4
    assert "cannot reach Redis at redis://admin:***@127.0.0.1" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
