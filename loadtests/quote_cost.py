"""What one `GET /api/quote` costs the API: CPU per call and latency, one call at a time, for a small amount (one
venue) and a large one (a split). Against a running engine:

    uv run python loadtests/quote_cost.py --api http://127.0.0.1:8000 --calls 500
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from urllib.parse import urlparse

import psutil

from loadtests import engine_cpu
from loadtests.machine import calibration_ms
from loadtests.raw_http import RawHttpPool

AMOUNTS = {"small (1 SOL)": "1", "large (2,000 SOL)": "2000"}


async def measure(api: str, calls: int) -> None:
    port = urlparse(api).port or 80
    process = psutil.Process(engine_cpu.find_engine(port).services["api"][0])
    client = RawHttpPool(api)
    try:
        for label, amount in AMOUNTS.items():
            path = f"/api/quote?tokenIn=SOL&tokenOut=USDC&amount={amount}&slippageBps=50"
            status, answer = await client.get_json(path)
            if status != 200:
                raise SystemExit(f"{path}: HTTP {status} {answer}")
            legs = len(answer["routePlan"])
            latencies = []
            before = process.cpu_times()
            for _ in range(calls):
                started = time.perf_counter()
                await client.get_json(path)
                latencies.append((time.perf_counter() - started) * 1000)
            after = process.cpu_times()
            cpu_ms = (after.user + after.system - before.user - before.system) * 1000 / calls
            latencies.sort()
            print(
                f"{label}, {legs} leg(s): API CPU {cpu_ms:.2f} ms/call; latency p50 {statistics.median(latencies):.2f}"
                f" ms, p99 {latencies[int(len(latencies) * 0.99) - 1]:.2f} ms"
            )
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    print(f"machine: calibration {calibration_ms():.0f} ms (lower = faster; compare runs only at similar values)")
    asyncio.run(measure(args.api, args.calls))


if __name__ == "__main__":
    main()
