"""`order-engine up` as `make run` runs it (real processes on the suite's Redis and PostgreSQL), `health` on a
ready and an unready API, and the API commands with access control on (`--api-key`, ORDER_ENGINE_API_KEY)."""

import asyncio
import re
import signal
import time

import httpx

from shared.auth.api_keys import KeyRing, Role
from tests.support.api_process import api_only
from tests.support.cli import cli_env, finish, order_engine, start_cli
from tests.support.processes import free_port


async def wait_for_health(port: int, process, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, "order-engine up exited early"
            try:
                if (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"no API on port {port} after {timeout} s")


async def test_up_runs_migrations_and_the_api_then_stops_on_ctrl_c_and_health_tells_ready_from_not(
    redis_url, database_url
):
    ready_port, unready_port = free_port(), free_port()
    dead_postgres = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    servers = {"REDIS_URL": redis_url, "SIM_SEED": "cli-up"}
    ready_env = cli_env(API_PORT=str(ready_port), DATABASE_URL=database_url, **servers)
    unready_env = cli_env(API_PORT=str(unready_port), DATABASE_URL=dead_postgres, **servers)
    ready = start_cli("up", "--only", "api", env=ready_env)
    unready = start_cli("up", "--only", "api", "--no-migrate", env=unready_env)
    try:
        await asyncio.gather(wait_for_health(ready_port, ready), wait_for_health(unready_port, unready))
        # No --api: the default URL follows API_PORT, as `make run` does.
        healthy, not_ready, not_ready_json = await asyncio.gather(
            order_engine("health", env=ready_env),
            order_engine("health", env=unready_env),
            order_engine("health", "--json", env=unready_env),
        )
    finally:
        for process in (ready, unready):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
    stopped, stopped_unready = await finish(ready), await finish(unready)

    assert healthy.returncode == 0, healthy
    assert f"http://127.0.0.1:{ready_port}" in healthy.stdout and re.search(r"postgres +ok", healthy.stdout)
    assert not_ready.returncode == 4, not_ready
    assert "is not ready: postgres down" in not_ready.stderr
    report = not_ready_json.json()
    assert report["ok"] is False and report["ready"]["redis"] == "ok" and report["ready"]["httpStatus"] == 503
    assert report["health"]["status"] == "ok"  # alive, not ready

    assert stopped.returncode == 0, stopped
    assert "migrate" in stopped.stdout and "starting api" in stopped.stdout, stopped
    assert "SIGINT: stopping every service" in stopped.stdout and "bye" in stopped.stdout
    assert stopped_unready.returncode == 0, stopped_unready
    assert not any(line.startswith("migrate ") for line in stopped_unready.stdout.splitlines())  # --no-migrate


async def test_up_refuses_bad_options_before_starting_anything():
    env = cli_env()
    replicas, unknown = await asyncio.gather(
        order_engine("up", "--replicas", "api=2", env=env), order_engine("up", "--only", "api,nope", env=env)
    )
    assert replicas.returncode == 2 and "error: the API listens on API_PORT" in replicas.stderr, replicas
    assert unknown.returncode == 2 and "unknown service(s) nope" in unknown.stderr, unknown


async def test_api_commands_send_the_api_key_and_show_a_refusal(redis, redis_url, database_url, tmp_path):
    secret, _ = await KeyRing(redis).create("cli-user", Role.USER)
    with api_only(redis_url, database_url, tmp_path, AUTH_ENABLED="true") as engine:
        anonymous = cli_env(engine.api_url)
        keyed = cli_env(engine.api_url, ORDER_ENGINE_API_KEY=secret)
        refused, wrong_key, placed = await asyncio.gather(
            order_engine("submit", "SOL", "USDC", "1", "--limit-price", "1000000", "--no-wait", env=anonymous),
            order_engine("health", "--api-key", "oek_not_a_key", env=anonymous),
            order_engine("submit", "SOL", "USDC", "1", "--limit-price", "1000000", "--no-wait", env=keyed),
        )
        assert refused.returncode == 1 and "(HTTP 401 unauthorized)" in refused.stderr, refused
        assert "send an API key" in refused.stderr
        assert wrong_key.returncode == 0, wrong_key  # the probes stay open
        assert placed.returncode == 0, placed
        order_id = placed.stdout.strip()

        # The WebSocket gets the key too (a header, never the URL); no worker runs here, so the order rests.
        watched, unseen, cancelled = await asyncio.gather(
            order_engine("watch", order_id, "--timeout", "2", "--json", env=keyed),
            order_engine("watch", order_id, env=anonymous),
            order_engine("cancel", order_id, "--api-key", secret, env=anonymous),
        )
    assert watched.returncode in (5, 7), watched  # timed out resting, or saw the cancel
    assert [line.get("status") for line in watched.json_lines()][:2] == ["pending", "waiting"]
    assert unseen.returncode == 1 and "(HTTP 401 unauthorized)" in unseen.stderr, unseen
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout, cancelled
    for run in (refused, wrong_key, placed, watched, unseen, cancelled):
        assert secret not in run.stdout + run.stderr
