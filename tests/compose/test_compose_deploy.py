"""`docker compose up` as a user runs it, then attacked: the real compose.yaml and deploy/Dockerfile.

The tests run in this order on one stack (conftest.py brings it up with `up --wait`): what is published,
an order of each type followed over its WebSocket to the end and found in the history, one service's logs,
the CLI inside a container, a short locust run, a crash of the execution worker's process under load
(every order still ends exactly once), two execution workers sharing the queue, then `down` and `up`
keeping history and resting orders.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import time

import httpx
import pytest
import redis
import sqlalchemy as sa

from shared.persistence.batch import make_engine
from tests.compose.conftest import COMPOSE_SETTINGS
from tests.compose.report import FIGURES
from tests.compose.stack import ROOT, ComposeStack
from tests.faults.invariants import executing, settle
from tests.faults.load import LAUNCHED_TOKENS, LoadDriver
from tests.support.orders import assert_gapless_and_legal
from tests.support.ws import collect

ENGINE_SERVICES = ("api", "quote-stream", "execution-worker", "db-sync", "limit-worker", "sniper-worker")
#: Orders placed by one test and looked for by a later one (the stack lives for the whole module).
PLACED: dict[str, str] = {}
#: Every order the API accepted during the module: all must hold the invariants at the end.
ACCEPTED: set[str] = set()
#: How long the engine gets to finish every order and persist it after the load stops.
SETTLE_TIMEOUT_S = 120


async def submit(http: httpx.AsyncClient, body: dict) -> str:
    response = await http.post("/api/orders/execute", json=body)
    assert response.status_code == 200, response.text
    ACCEPTED.add(order_id := response.json()["orderId"])
    return order_id


async def follow(stack: ComposeStack, order_id: str, timeout: float = 60) -> list[dict]:
    messages, code = await collect(f"{stack.ws_url}/ws/orders/{order_id}", timeout)
    assert code == 1000, f"{order_id}: the socket closed with {code} after {messages}"
    assert_gapless_and_legal(messages)
    return messages


def engine_redis(stack: ComposeStack, **options) -> redis.Redis:
    """The stack's Redis as the engine's services reach it: its `engine` ACL user and REDIS_PASSWORD."""
    password = COMPOSE_SETTINGS["REDIS_PASSWORD"]
    return redis.Redis(host=stack.ip("redis"), port=6379, username="engine", password=password, **options)


def invariants(stack: ComposeStack, acknowledged: set[str]):
    """The fault suite's checker, against the stack's own Redis and PostgreSQL (reached on their container
    addresses: nothing is published for them)."""
    client = engine_redis(stack, socket_timeout=10)
    engine = make_engine(f"postgresql://postgres:postgres@{stack.ip('postgres')}:5432/orders")
    try:
        return settle(client, engine, acknowledged, SETTLE_TIMEOUT_S)
    finally:
        client.close()
        engine.dispose()


def wait_healthy(stack: ComposeStack, service: str, replica: int = 1, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (health := stack.health(service, replica)) != "healthy":
        assert time.monotonic() < deadline, f"{service}-{replica} is {health} after {timeout} s"
        time.sleep(0.5)


def wait_for_orders_in_flight(stack: ComposeStack, timeout: float = 20) -> int:
    """Wait until the execution worker holds messages it has not acked (orders it is driving), so that a
    crash now interrupts real work; returns how many."""
    client = engine_redis(stack, socket_timeout=5)
    held, deadline = executing(client), time.monotonic() + timeout
    try:
        while not (count := held()):
            assert time.monotonic() < deadline, f"no order was mid-execution within {timeout} s"
            time.sleep(0.05)
        return count
    finally:
        client.close()


def test_every_service_is_healthy_and_only_the_api_is_published_on_loopback(stack: ComposeStack):
    for service in ENGINE_SERVICES + ("redis", "postgres"):
        assert stack.health(service) == "healthy", service
    migrate = stack.container("migrate")["State"]
    assert migrate["Status"] == "exited" and migrate["ExitCode"] == 0
    for service in ENGINE_SERVICES + ("redis", "postgres"):
        bindings = {
            port: hosts for port, hosts in stack.container(service)["NetworkSettings"]["Ports"].items() if hosts
        }
        expected = {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(stack.api_port)}]} if service == "api" else {}
        assert bindings == expected, f"{service} publishes {bindings}"
    assert httpx.get(f"{stack.api_url}/ready", timeout=10).status_code == 200


def test_redis_needs_the_password_refuses_dangerous_commands_and_never_evicts(stack: ComposeStack):
    anonymous = redis.Redis(host=stack.ip("redis"), port=6379, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):  # the default user is off: nothing without the password
        anonymous.ping()
    anonymous.close()
    guessed = redis.Redis(host=stack.ip("redis"), port=6379, password="postgres", socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        guessed.ping()
    guessed.close()
    wrong = redis.Redis(host=stack.ip("redis"), port=6379, username="engine", password="nope", socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    wrong.close()
    client = engine_redis(stack, socket_timeout=5)
    try:
        assert client.ping()
        dangerous = ("FLUSHALL", "FLUSHDB", "CONFIG GET maxmemory", "DEBUG SLEEP 0", "ACL LIST", "SAVE")
        for command in dangerous:
            with pytest.raises(redis.ResponseError):  # NOPERM (DEBUG: also disabled outright)
                client.execute_command(*command.split())
        memory = client.info("memory")  # what the API's memory check reads
        assert memory["maxmemory_policy"] == "noeviction", memory
        assert memory["maxmemory"] == 256 * 1024 * 1024, memory  # REDIS_MAXMEMORY=256mb from the env file
    finally:
        client.close()
    # The health check (redis-cli with the container's REDISCLI_AUTH) passed: the service is healthy.
    assert stack.health("redis") == "healthy"


def test_nobody_reaching_the_port_gets_admin_powers_but_a_shell_in_the_container_does(stack: ComposeStack):
    for method, path in (("GET", "/api/admin/dlq"), ("POST", "/api/admin/dlq/replay"), ("DELETE", "/api/admin/dlq")):
        response = httpx.request(method, f"{stack.api_url}{path}", params={"olderThanS": 0}, timeout=10)
        assert response.status_code == 403 and response.json()["error"] == "admin_disabled", (path, response.text)
    run = stack.exec("api", "order-engine", "dlq", "list", "--json")
    assert run.returncode == 0 and "deadLetters" in json.loads(run.stdout), run.stdout + run.stderr


async def test_an_order_of_each_type_reaches_its_end_over_the_websocket(stack: ComposeStack):
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=15) as http:
        market = await submit(http, {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "0.5"})
        # Selling SOL for at least 1 USDC each: crossed on the limit worker's next tick.
        limit = await submit(
            http, {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "0.5", "limitPrice": "1"}
        )
        token = await next_unlisted_token(http)
        sniper = await submit(
            http,
            {"type": "sniper", "tokenIn": "SOL", "tokenOut": token, "amount": "0.1", "trigger": {"kind": "listing"},
             "slippageBps": 300},
        )  # fmt: skip
        followed = await asyncio.gather(*(follow(stack, oid, 90) for oid in (market, limit, sniper)))
    PLACED.update(market=market, limit=limit, sniper=sniper)
    market_events, limit_events, sniper_events = followed
    assert [m["status"] for m in market_events][-1] == "confirmed", market_events
    assert "triggered" in [m["status"] for m in limit_events] and limit_events[-1]["status"] == "confirmed"
    assert "triggered" in [m["status"] for m in sniper_events] and sniper_events[-1]["status"] == "confirmed"
    assert all(events[-1]["txHash"] for events in followed)


async def next_unlisted_token(http: httpx.AsyncClient) -> str:
    """A token the simulated chain has not launched yet (its market order is refused), so the sniper order
    waits for the launch; the first one if every token is out already."""
    for token in LAUNCHED_TOKENS:
        body = {"type": "market", "tokenIn": "SOL", "tokenOut": token, "amount": "0.1"}
        response = await http.post("/api/orders/execute", json=body)
        if response.status_code == 200:  # listed: a real order, which must end like any other
            ACCEPTED.add(response.json()["orderId"])
            continue
        assert response.json()["error"] == "pair_not_listed", response.text
        return token
    return LAUNCHED_TOKENS[0]


async def test_the_history_comes_from_postgresql(stack: ComposeStack):
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=15) as http:
        async with asyncio.timeout(30):  # db-sync persists the terminal events within a moment
            while True:
                page = (await http.get("/api/orders", params={"limit": 100, "status": "confirmed"})).json()
                found = {order["orderId"]: order for order in page["orders"]}
                if all(order_id in found for order_id in PLACED.values()):
                    break
                await asyncio.sleep(0.5)
    assert {found[oid]["type"] for oid in PLACED.values()} == {"market", "limit", "sniper"}


def test_one_services_logs_hold_its_lines_for_those_orders_and_no_other_services(stack: ComposeStack):
    prefixed = stack.logs("execution-worker").splitlines()
    assert prefixed and all(line.startswith("execution-worker-1 ") for line in prefixed), prefixed[:3]
    lines = [json.loads(line) for line in stack.logs("execution-worker", "--no-log-prefix").splitlines()]
    assert {line["service"] for line in lines} == {"execution-worker"}
    for order_id in PLACED.values():
        mine = [line for line in lines if line.get("orderId") == order_id]
        assert any("confirmed" in line["msg"] for line in mine), f"no confirmation line for {order_id}"
    assert set(lines[0]) >= {"ts", "level", "service", "msg"}


def test_one_order_is_followed_across_services_with_the_readmes_jq_recipe(stack: ComposeStack):
    order_id = PLACED["limit"]
    recipe = f"jq -cR 'fromjson? | select(.orderId==\"{order_id}\")' | sort"  # docs/deployment.md "Logs"
    logs = stack.compose("logs", "--no-log-prefix").stdout
    run = subprocess.run(["sh", "-c", recipe], input=logs, capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert {line["orderId"] for line in lines} == {order_id}
    # Accepted by the API, triggered by the limit worker, executed by the worker, in the order it happened.
    assert {"api", "limit-worker", "execution-worker"} <= {line["service"] for line in lines}, lines
    assert [line["ts"] for line in lines] == sorted(line["ts"] for line in lines)
    assert lines[0]["service"] == "api" and "confirmed" in lines[-1]["msg"], lines


def test_the_cli_works_inside_the_api_container(stack: ComposeStack):
    run = stack.exec("api", "order-engine", "health", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] and report["ready"]["status"] == "ready", report
    run = stack.exec("api", "order-engine", "orders", "--status", "confirmed", "--json")
    assert run.returncode == 0 and PLACED["market"] in run.stdout, run.stdout + run.stderr
    run = stack.exec("api", "order-engine", "submit", "SOL", "USDC", "0.2", "--json")  # as the README shows
    assert run.returncode == 0, run.stdout + run.stderr
    accepted, *events = [json.loads(line) for line in run.stdout.splitlines()]
    ACCEPTED.add(accepted["orderId"])
    assert events[-1]["status"] == "confirmed" and events[-1]["orderId"] == accepted["orderId"], events


def test_a_short_locust_run_against_the_stack(stack: ComposeStack, tmp_path):
    report = tmp_path / "market"
    env = {**os.environ, "LOAD_THINK_MIN_S": "0.1", "LOAD_THINK_MAX_S": "0.3"}
    command = [
        "make", "--no-print-directory", "load", "SCENARIO=market", "USERS=4", "RATE=4", "DURATION=8s",
        f"HOST={stack.api_url}", "STOP_TIMEOUT=15", f"LOAD_REPORT={report}",
    ]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with open(f"{report}_stats.csv", newline="") as stats_file:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(stats_file)}
    confirmed = int(rows[("ORDER", "market submit→confirmed")]["Request Count"])
    assert confirmed > 0 and all(row["Failure Count"] == "0" for row in rows.values()), rows
    FIGURES["locust (4 users, 8 s)"] = f"{confirmed} orders confirmed, 0 failures"


def test_a_crashed_execution_worker_comes_back_and_every_order_ends_exactly_once(stack: ComposeStack):
    load = LoadDriver(stack.api_url, rate_per_s=8, give_up_after_s=60, seed=12).start()
    try:
        time.sleep(6)
        FIGURES["orders mid-execution when the worker was killed"] = wait_for_orders_in_flight(stack)
        restarts = stack.crash("execution-worker")
        crashed_at = time.monotonic()
        deadline = crashed_at + 120
        while int(stack.container("execution-worker")["RestartCount"]) == restarts:
            assert time.monotonic() < deadline, "the restart policy did not bring the execution worker back"
            time.sleep(0.2)
        wait_healthy(stack, "execution-worker")
        FIGURES["execution worker: SIGKILL → healthy again"] = f"{time.monotonic() - crashed_at:.1f} s"
        time.sleep(6)  # the load goes on against the restarted worker
    finally:
        load.stop()
    ACCEPTED.update(load.accepted)
    assert len(load.accepted) > 50, load.stats
    verdict, waited = invariants(stack, ACCEPTED)
    FIGURES["crash under load"] = f"{len(load.accepted)} orders accepted, {verdict.counts()}, settled in {waited:.0f} s"
    assert verdict.ok, f"{verdict.counts()}: {verdict.violations[:10]}"
    for service in ENGINE_SERVICES:  # nothing else went down with it
        expected = restarts + 1 if service == "execution-worker" else 0
        assert int(stack.container(service)["RestartCount"]) == expected, service


async def test_two_execution_workers_share_the_queue(stack: ComposeStack):
    stack.up("--scale", "execution-worker=2", "--no-recreate")
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=15) as http:
        orders = []
        for _ in range(40):  # spread over ~2 s: both workers are polling while orders arrive
            body = {"type": "market", "tokenIn": "USDC", "tokenOut": "SOL", "amount": "20"}
            orders.append(await submit(http, body))
            await asyncio.sleep(0.05)
        ends = await asyncio.gather(*(follow(stack, oid, 90) for oid in orders))
    assert {events[-1]["status"] for events in ends} == {"confirmed"}
    by_replica: dict[str, set[str]] = {}
    for line in stack.logs("execution-worker").splitlines():
        replica, _, text = line.partition(" | ")
        order_id = json.loads(text).get("orderId")
        if order_id in orders:
            by_replica.setdefault(replica.strip(), set()).add(order_id)
    assert sorted(by_replica) == ["execution-worker-1", "execution-worker-2"], by_replica
    FIGURES["two execution workers"] = {name: len(ids) for name, ids in sorted(by_replica.items())}
    stack.up("--scale", "execution-worker=1", "--no-recreate")  # replica 2 drains and stops on SIGTERM


async def test_down_then_up_keeps_history_and_resting_orders(stack: ComposeStack):
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=15) as http:
        resting = await submit(
            http, {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": "1000000"}
        )
        assert (await http.get(f"/api/orders/{resting}")).json()["status"] in ("pending", "waiting")
    stack.down()
    FIGURES["up → ready (after down, volumes kept)"] = f"{stack.up():.1f} s"
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=15) as http:
        assert (await http.get(f"/api/orders/{resting}")).json()["status"] == "waiting"
        history = (await http.get("/api/orders", params={"limit": 500})).json()["orders"]
        assert set(PLACED.values()) <= {order["orderId"] for order in history}
    verdict, _ = invariants(stack, ACCEPTED)  # the resting order is still where a trigger finds it
    assert verdict.ok, f"{verdict.counts()}: {verdict.violations[:10]}"
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=15) as http:
        cancelled = await http.delete(f"/api/orders/{resting}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    engine = make_engine(f"postgresql://postgres:postgres@{stack.ip('postgres')}:5432/orders")
    try:
        with engine.connect() as db:
            persisted = db.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
    finally:
        engine.dispose()
    assert persisted >= len(ACCEPTED)
