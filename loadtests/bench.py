"""End-to-end benchmark: N market orders at a fixed open-loop rate, followed to the end over WebSockets.

Against a running engine (it starts nothing but its own clients):

    uv run python loadtests/bench.py --api http://127.0.0.1:8000 --rate 250 --duration 30 --json reports/

Prints the offered and achieved rates, submit→terminal latency percentiles, the engine's own overhead
(latency minus the simulated venue latencies the events report as `venueLatencyMs`), lost and failed
orders, CPU ms per completed order per engine process (Redis, PostgreSQL and the `make run` log pump apart),
and how far PostgreSQL trailed the event stream. See docs/benchmarks.md for how to read it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from loadtests import engine_cpu, machine  # noqa: E402
from loadtests.bench_client import ClientPlan, ClientResult, run_client_process  # noqa: E402
from loadtests.dbsync_lag import LagSampler  # noqa: E402

#: Clients start together this long after being spawned, so process start-up is not in the schedule.
START_DELAY_S = 1.5
REPORTS = Path(__file__).resolve().parents[1] / "reports"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _spread(values_ms: list[float]) -> dict[str, float]:
    return {name: percentile(values_ms, q) for name, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))}


def summarise(records: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    sent = [r for r in records if r["sent"]]
    accepted = [r for r in sent if r["order_id"]]
    confirmed = [r for r in accepted if r["status"] == "confirmed"]
    failed = [r for r in accepted if r["status"] == "failed"]
    lost = [r for r in accepted if not r["status"]]
    first_sent = min(r["sent"] for r in sent)
    last_sent = max(r["sent"] for r in sent)
    finished = [r for r in accepted if r["status"]]
    last_terminal = max((r["terminal_at"] for r in finished), default=last_sent)
    latency = [(r["terminal_at"] - r["sent"]) * 1000 for r in confirmed]
    overhead = [(r["terminal_at"] - r["sent"]) * 1000 - r["venue_ms"] for r in confirmed]
    first_try = [(r["terminal_at"] - r["sent"]) * 1000 - r["venue_ms"] for r in confirmed if r["attempts"] <= 1]
    http_errors: dict[str, int] = {}
    for r in sent:
        if not r["order_id"]:
            http_errors[r["error"]] = http_errors.get(r["error"], 0) + 1
    return {
        "orders": len(records),
        "offered_rate": rate,
        "sent_rate": len(sent) / max(last_sent - first_sent, 1e-9) if len(sent) > 1 else 0.0,
        "accepted": len(accepted),
        "confirmed": len(confirmed),
        "failed": len(failed),
        "failed_errors": sorted({r["error"] for r in failed}),
        "lost": len(lost),
        "lost_ids": [r["order_id"] for r in lost[:20]],
        "http_errors": http_errors,
        "submit_window_s": last_sent - first_sent,
        "completion_window_s": last_terminal - first_sent,
        "completed_rate": len(finished) / max(last_terminal - first_sent, 1e-9),
        "submit_ms": _spread([(r["answered"] - r["sent"]) * 1000 for r in accepted]),
        "latency_ms": _spread(latency),
        "venue_ms": _spread([float(r["venue_ms"]) for r in confirmed]),
        "overhead_ms": _spread(overhead),
        "overhead_first_attempt_ms": _spread(first_try),
        "retried": len(confirmed) - len(first_try),
        "last_terminal_at": last_terminal,
    }


async def _lost_statuses(api: str, order_ids: list[str]) -> dict[str, str]:
    """What the engine says about orders whose terminal event never reached us."""
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        answers = {}
        for order_id in order_ids:
            response = await client.get(f"/api/orders/{order_id}")
            answers[order_id] = response.json().get("status", str(response.status_code))
        return answers


async def _persisted(database_url: str, user_ids: list[str]) -> dict[str, int]:
    """Rows of this run's orders in PostgreSQL, by status."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url.replace("+psycopg", "")) as conn:
        cursor = await conn.execute(
            "SELECT status, count(*) FROM orders WHERE user_id = ANY(%s) GROUP BY status", (user_ids,)
        )
        return {status: count for status, count in await cursor.fetchall()}


async def _idle_cpu(engine: engine_cpu.EngineProcesses, seconds: float) -> dict[str, float]:
    """CPU ms per second each group spends with no orders: the background every figure sits on."""
    before = engine_cpu.cpu_seconds(engine)
    await asyncio.sleep(seconds)
    after = engine_cpu.cpu_seconds(engine)
    return {name: (after[name] - before.get(name, 0.0)) * 1000 / seconds for name in after}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    count = args.orders or round(args.rate * args.duration)
    run_id = uuid.uuid4().hex[:8]
    engine = engine_cpu.find_engine(urlparse(args.api).port or 80) if args.engine_pids == "auto" else None
    redis_url = args.redis_url or (engine.redis_url if engine else "")
    database_url = args.database_url or (engine.database_url if engine else "")
    if engine:
        print(f"engine processes: {engine.describe()}")
    if args.warmup_s:
        # A fresh engine spends its first orders importing, connecting and filling caches: not per-order cost.
        warmup = ClientPlan(args.api, args.rate, round(args.rate * args.warmup_s), 0, f"bench-{run_id}-warmup", 0.0)
        warmup.start_at = time.time() + START_DELAY_S
        with ProcessPoolExecutor(max_workers=1) as pool:
            await asyncio.get_running_loop().run_in_executor(pool, run_client_process, warmup)
    idle = await _idle_cpu(engine, args.idle_s) if engine and args.idle_s else {}
    calibration = machine.calibration_ms()

    start_at = time.time() + START_DELAY_S
    per_client = [count // args.clients + (1 if i < count % args.clients else 0) for i in range(args.clients)]
    plans, first = [], 0
    for i, n in enumerate(per_client):
        plan = ClientPlan(
            api=args.api,
            rate=args.rate / args.clients,
            count=n,
            first_index=first,
            user_id=f"bench-{run_id}-{i}",
            # Clients interleave their schedules so the combined offer stays evenly spaced.
            start_at=start_at + i / args.rate,
            ws_mode=args.ws,
            timeout_s=args.timeout,
        )
        plans.append(plan)
        first += n
    sampler = LagSampler(redis_url, cluster=bool(engine and engine.redis_cluster)) if redis_url else None
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop)) if sampler else None
    cpu_before = engine_cpu.cpu_seconds(engine) if engine else {}
    machine_before = machine.CpuTimes.read()
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=args.clients) as pool:
        futures = [loop.run_in_executor(pool, run_client_process, plan) for plan in plans]
        results: list[ClientResult] = await asyncio.gather(*futures)
    drained_s = await sampler.drained_within(args.timeout) if sampler else None
    cpu_after = engine_cpu.cpu_seconds(engine) if engine else {}
    usage = machine.usage_between(machine_before, machine.CpuTimes.read())
    stop.set()
    if sampling:
        await sampling
    records = [record for result in results for record in result.records]
    report = summarise(records, args.rate)
    completed = report["confirmed"] + report["failed"]
    report["client"] = {
        "processes": args.clients,
        "ws_mode": args.ws,
        "cpu_ms_per_order": sum(r.cpu_s for r in results) * 1000 / max(count, 1),
        "max_late_ms": max(r.max_late_s for r in results) * 1000,
        "ws_errors": sum(r.ws_errors for r in results),
    }
    report["machine"] = {"calibration_ms": calibration, **usage}
    if usage and engine:
        measured_s = sum(
            after - cpu_before.get(name, 0.0)
            for name, after in cpu_after.items()
            if name != "runner" and not name.startswith("redis:")  # a cluster's nodes are in "redis" already
        )
        client_s = sum(r.cpu_s for r in results)
        report["machine"]["other_load_cpu_s"] = max(usage["busy_cpu_s"] - measured_s - client_s, 0.0)
    if engine:
        per_order = engine_cpu.per_order_ms(cpu_before, cpu_after, completed)
        services = {k: v for k, v in per_order.items() if k in engine.services}
        report["cpu_ms_per_order"] = {
            "services": services,
            "services_total": sum(services.values()),
            "redis": per_order.get("redis", 0.0),
            # A cluster's nodes one by one (by port): the shard benchmark's per-shard cost.
            "redis_nodes": {k.partition(":")[2]: v for k, v in per_order.items() if k.startswith("redis:")},
            "postgres": per_order.get("postgres", 0.0),
            "runner": per_order.get("runner", 0.0),
            "window_s": report["last_terminal_at"] - start_at,
        }
        report["idle_cpu_ms_per_s"] = idle
    if sampler:
        samples_ms = [s * 1000 for s in sampler.samples]
        report["dbsync_lag_ms"] = {**_spread(samples_ms), "drained_after_last_poll_s": drained_s}
        await sampler.close()
    if report["lost"]:
        report["lost_statuses"] = await _lost_statuses(args.api, report["lost_ids"])
    if database_url:
        report["persisted"] = await _persisted(database_url, [plan.user_id for plan in plans])
    report["settings"] = {k: v for k, v in vars(args).items() if k != "json"}
    report["plans"] = [asdict(plan) for plan in plans[:1]]
    return report


def print_report(report: dict[str, Any]) -> None:
    def spread(name: str) -> str:
        s = report[name]
        return f"p50 {s['p50']:.1f}  p95 {s['p95']:.1f}  p99 {s['p99']:.1f}  max {s['max']:.1f}"

    client = report["client"]
    print(
        f"orders {report['orders']}: offered {report['offered_rate']:.0f}/s (sent at {report['sent_rate']:.1f}/s,"
        f" client at most {client['max_late_ms']:.0f} ms late, {client['processes']} process(es),"
        f" {client['cpu_ms_per_order']:.2f} client CPU ms/order)"
    )
    print(
        f"accepted {report['accepted']}  confirmed {report['confirmed']}  failed {report['failed']}"
        f" {report['failed_errors'] or ''}  lost {report['lost']}  http errors {report['http_errors'] or 0}"
        f"  retried {report['retried']}"
    )
    if report.get("ws_errors"):
        # Orders whose socket failed show as lost: often the API's per-client socket cap (WS_MAX_PER_CLIENT,
        # 256) with one socket per order from one address; the engine may well have confirmed them.
        print(f"websocket errors {report['ws_errors']} (refused or dropped sockets; see WS_MAX_PER_CLIENT)")
    print(
        f"completed {report['completed_rate']:.1f} orders/s (submitting took {report['submit_window_s']:.1f} s,"
        f" all terminal after {report['completion_window_s']:.1f} s)"
    )
    print(f"POST answered (ms)          {spread('submit_ms')}")
    print(f"submit→confirmed (ms)       {spread('latency_ms')}")
    print(f"simulated venue time (ms)   {spread('venue_ms')}")
    print(f"engine overhead (ms)        {spread('overhead_ms')}")
    print(f"  first-attempt orders      {spread('overhead_first_attempt_ms')}")
    if "cpu_ms_per_order" in report:
        cpu = report["cpu_ms_per_order"]
        services = "  ".join(f"{k} {v:.2f}" for k, v in sorted(cpu["services"].items()))
        print(f"CPU ms/order: engine {cpu['services_total']:.2f} ({services})")
        servers = f"redis {cpu['redis']:.2f}  postgres {cpu['postgres']:.2f}  make-run log pump {cpu['runner']:.2f}"
        print(f"              {servers}")
        idle = "  ".join(f"{k} {v:.1f}" for k, v in sorted(report["idle_cpu_ms_per_s"].items()))
        if idle:
            print(f"idle CPU ms/s before the run: {idle}")
    box = report.get("machine", {})
    if "busy_pct" in box:
        print(
            f"machine: calibration {box['calibration_ms']:.0f} ms (lower = faster; compare runs only at similar"
            f" values), {box['cpus']} CPUs {box['busy_pct']:.0f} % busy, steal {box['steal_pct']:.1f} %,"
            f" other load {box.get('other_load_cpu_s', 0.0):.1f} CPU-s during the run"
        )
    if "dbsync_lag_ms" in report:
        lag = report["dbsync_lag_ms"]
        print(
            f"db-sync lag (oldest unpersisted event, ms): p50 {lag['p50']:.0f}  p99 {lag['p99']:.0f}"
            f"  max {lag['max']:.0f}; drained {lag['drained_after_last_poll_s']} s after the clients finished"
        )
    if "persisted" in report:
        print(f"PostgreSQL rows of this run by status: {report['persisted']}")
    if report.get("lost_statuses"):
        print(f"lost orders as the API sees them: {report['lost_statuses']}")


def _json_path(target: str) -> Path:
    path = Path(target)
    if target.endswith("/") or path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        path = path / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default=f"http://127.0.0.1:{os.environ.get('API_PORT', '8000')}")
    parser.add_argument("--rate", type=float, default=250, help="orders/s offered, open loop")
    parser.add_argument("--duration", type=float, default=30, help="seconds of submitting (orders = rate × this)")
    parser.add_argument("--orders", type=int, default=0, help="a fixed number of orders instead of --duration")
    parser.add_argument("--clients", type=int, default=1, help="client processes sharing the rate")
    parser.add_argument(
        "--ws",
        choices=("user", "order"),
        default="user",
        help="one /ws?userId= socket per client, or one socket per order",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120,
        # A dropped transaction (SIM_DROP_RATE) is re-sent only once its blockhash has expired, a minute later.
        help="seconds to wait for terminal events after the last submit",
    )
    parser.add_argument("--engine-pids", choices=("auto", "none"), default="auto", help="CPU accounting of the engine")
    parser.add_argument("--warmup-s", type=float, default=5, help="seconds of load before measuring (not counted)")
    parser.add_argument("--idle-s", type=float, default=3, help="seconds of idle CPU measured before the run")
    parser.add_argument("--redis-url", default="", help="for db-sync lag; default: the engine's own")
    parser.add_argument("--database-url", default="", help="to count persisted rows; default: the engine's own")
    parser.add_argument(
        "--json", default="", help=f"also write the report as JSON (a file, or a folder such as {REPORTS.name}/)"
    )
    args = parser.parse_args()
    report = asyncio.run(bench(args))
    print_report(report)
    if args.json:
        path = _json_path(args.json)
        path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        print(f"report written to {path}")


if __name__ == "__main__":
    main()
