"""Every service's /metrics and /health, scraped from the real processes around a market order to confirmed;
every metric the Grafana dashboard reads is exported; /health turns 503 when a service loses Redis."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

from deploy.local import SERVICES
from deploy.local.embedded_redis import EmbeddedRedis
from shared.settings import DEFAULT_PAIRS
from tests.support.dashboard import dashboard_families
from tests.support.processes import fast_engine
from tests.support.ws import collect

VENUES = ("raydium", "meteora", "best")


class Scrape:
    """One /metrics answer: its samples by (name, labels), and the names of its metric families."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.families: set[str] = set()
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            for sample in family.samples:
                self.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def labelled(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for sample_name, labels in self.samples if sample_name == name]


async def scrape_all(engine) -> dict[str, Scrape]:
    async with httpx.AsyncClient(timeout=10) as client:
        answers = await asyncio.gather(*(client.get(f"{engine.replica(name).probes_url}/metrics") for name in SERVICES))
    for name, answer in zip(SERVICES, answers, strict=True):
        assert answer.status_code == 200, (name, answer.text)
    return {name: Scrape(answer.text) for name, answer in zip(SERVICES, answers, strict=True)}


async def quiet_scrape(engine, timeout: float = 30) -> dict[str, Scrape]:
    """A scrape of every service once the execution worker has nothing queued or in flight."""
    deadline = time.monotonic() + timeout
    while True:
        scrapes = await scrape_all(engine)
        worker = scrapes["execution-worker"]
        backlog = sum(worker.value("engine_execution_queue_depth", queue=q) for q in ("ready", "delayed"))
        if backlog + worker.value("engine_execution_in_flight") == 0:
            return scrapes
        assert time.monotonic() < deadline, "the execution worker never went quiet"
        await asyncio.sleep(0.2)


async def healthy_within(url: str, timeout: float = 30) -> dict:
    """Poll `url` until it answers 200 (services beat a moment after they start); its last body."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            try:
                response = await client.get(url)
            except httpx.TransportError:  # not listening yet (still importing)
                assert time.monotonic() < deadline, f"{url} never answered"
            else:
                if response.status_code == 200 or time.monotonic() > deadline:
                    assert response.status_code == 200, (url, response.text)
                    return response.json()
            await asyncio.sleep(0.2)


async def confirmed_in_history(http: httpx.AsyncClient) -> set[str]:
    page = (await http.get("/api/orders", params={"status": "confirmed", "limit": 500})).json()
    return {row["orderId"] for row in page["orders"]}


async def test_every_service_reports_a_market_order_and_is_healthy(engine, http):
    for name in SERVICES:
        body = await healthy_within(f"{engine.replica(name).probes_url}/health")
        assert body["status"] == "ok" and body["service"] == name, body
    before = await quiet_scrape(engine)  # no order of an earlier test still in flight: exact deltas

    response = await http.post(
        "/api/orders/execute", json={"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.25"}
    )
    assert response.status_code == 200, response.text
    order_id = response.json()["orderId"]
    messages, _ = await collect(f"{engine.ws_url}/ws/orders/{order_id}")
    assert messages[-1]["status"] == "confirmed"
    async with asyncio.timeout(15):  # until db-sync has committed the order's events to PostgreSQL
        while order_id not in await confirmed_in_history(http):
            await asyncio.sleep(0.1)
    after = await scrape_all(engine)

    def delta(service: str, name: str, **labels: str) -> float:
        return after[service].value(name, **labels) - before[service].value(name, **labels)

    assert delta("api", "engine_orders_accepted_total", type="market") == 1
    worker = "execution-worker"
    assert delta(worker, "engine_orders_terminal_total", type="market", status="confirmed") == 1
    assert delta(worker, "engine_order_duration_seconds_count", type="market", status="confirmed") == 1
    for stage in ("pending_to_routing", "routing_to_submitted", "submitted_to_confirmed"):
        assert delta(worker, "engine_order_stage_seconds_count", type="market", stage=stage) == 1, stage
        assert after[worker].value("engine_order_stage_seconds_sum", type="market", stage=stage) > 0, stage
    assert after[worker].value("engine_execution_queue_depth", queue="ready") >= 0
    assert ("engine_execution_in_flight", ()) in after[worker].samples

    ages = defaultdict(dict)
    for labels in after["quote-stream"].labelled("engine_quote_age_seconds"):
        ages[labels["pair"]][labels["venue"]] = after["quote-stream"].value("engine_quote_age_seconds", **labels)
    for pair in DEFAULT_PAIRS.split(","):
        assert set(ages[pair]) == set(VENUES), pair
        assert all(0 <= age < 5 for age in ages[pair].values()), (pair, ages[pair])

    assert delta("db-sync", "engine_dbsync_entries_total") >= 5
    assert delta("db-sync", "engine_dbsync_batches_total") >= 1
    assert ("engine_dbsync_lag_seconds", ()) in after["db-sync"].samples
    assert after["limit-worker"].labelled("engine_limit_orders_resting")  # one per streamed pair
    assert "engine_sniper_orders_armed" in after["sniper-worker"].families
    for name in ("execution-worker", "db-sync", "limit-worker", "sniper-worker"):
        assert after[name].value("engine_redis_gauges_ok") == 1, name
    for name in SERVICES:
        assert after[name].value("process_cpu_seconds_total") > 0, name

    # The board cannot silently rot: every metric family the dashboard reads is exported by some service.
    exported = set().union(*(scrape.families for scrape in after.values()))
    missing = sorted(dashboard_families() - exported)
    assert not missing, f"the Grafana dashboard reads metrics no service exports: {missing}"


async def test_health_turns_503_when_redis_is_lost_or_stops_answering_and_recovers(tmp_path, database_url):
    """A service whose Redis dies fails /health at once; one whose Redis hangs goes stale; both recover."""
    with EmbeddedRedis(tmp_path / "private-redis") as private:
        engine = fast_engine(private.url, database_url, tmp_path / "logs", "health", HEALTH_STALE_AFTER_S="2")
        (tmp_path / "logs").mkdir()
        try:
            quotes = engine.start("quote-stream")
            worker = engine.start("execution-worker")
            urls = {"quote-stream": f"{quotes.probes_url}/health", "execution-worker": f"{worker.probes_url}/health"}
            for url in urls.values():
                await healthy_within(url)

            private.kill()
            for name, url in urls.items():
                body = await unhealthy_within(url)
                assert body["service"] == name and any(v.startswith("failing: ") for v in body["checks"].values())
            private.revive()
            for url in urls.values():
                await healthy_within(url)

            private.pause()  # SIGSTOP: connections stay open, nothing answers
            try:
                body = await unhealthy_within(urls["quote-stream"], timeout=15)
                assert body["checks"]["quotes"].startswith(("stale: ", "failing: ")), body
            finally:
                private.resume()
            await healthy_within(urls["quote-stream"])
        finally:
            engine.stop_all()


async def unhealthy_within(url: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            response = await client.get(url)
            if response.status_code == 503:
                return response.json()
            assert time.monotonic() < deadline, (url, response.status_code, response.text)
            await asyncio.sleep(0.2)
