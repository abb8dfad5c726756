"""Does Redis's share of the work spread over shards? The same load on Redis Clusters of 1, 2 and 3 primaries.

    uv run python loadtests/shard_bench.py --shards 1,2,3 --rate 60 --duration 40 --partitions 6 --json reports/

For each shard count it starts a cluster on loopback (tests/support/redis_cluster.py: Debian's Redis 7, no
replicas, so that the box's CPU goes to the engine; slot ranges from `partition_slot_ranges`, so that the
partitions spread evenly), every service of the engine against it (`REDIS_CLUSTER=true`, `PARTITIONS`, the
default simulated latencies and failure rate, one WebSocket per order; `--no-latencies --ws user` for the
throughput regime), runs loadtests/bench.py against it, and reports per primary: CPU ms per completed order,
commands per order, the partitions whose slots it serves and its keys at the end; and the engine's own CPU
per order.
A PostgreSQL database of its own is created on `--database-url` for each run and dropped after.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from shared.domain.partitions import all_partitions, tag  # noqa: E402
from shared.persistence.migrate import upgrade  # noqa: E402
from shared.redis_cluster import partition_slot_ranges  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.support.databases import create_scratch_database, drop_database  # noqa: E402
from tests.support.processes import running_engine  # noqa: E402
from tests.support.redis_cluster import RedisClusterNodes, redis_cluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def node_stats(cluster: RedisClusterNodes) -> dict[int, dict[str, int]]:
    stats = {}
    for node in cluster.primaries():
        client = redis.Redis(port=node.port)
        try:
            info = client.info("stats")
            stats[node.port] = {"commands": int(info["total_commands_processed"]), "keys": int(client.dbsize())}
        finally:
            client.close()
    return stats


def partitions_by_node(cluster: RedisClusterNodes, partitions: int) -> dict[int, list[int]]:
    owners: dict[int, list[int]] = {node.port: [] for node in cluster.primaries()}
    for partition in all_partitions(partitions):
        owners[cluster.primary_for_key(tag(partition)).port].append(partition)
    return owners


def run_once(shards: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    defaults = Settings()
    env = {
        "REDIS_CLUSTER": "true",
        "PARTITIONS": str(args.partitions),
        "SIM_LATENCY_SCALE": str(defaults.sim_latency_scale if args.latencies else 0),
        "SIM_FAILURE_RATE": str(defaults.sim_failure_rate if args.latencies else 0),
        "RATE_LIMIT_PER_S": "100000",
        "QUOTE_INTERVAL_MS": str(defaults.quote_interval_ms),
        "LOG_LEVEL": "WARNING",
    }
    (work / f"logs-{shards}").mkdir(parents=True, exist_ok=True)
    database_url = create_scratch_database(args.database_url, f"shards{shards}")
    upgrade(database_url)
    try:
        with (
            redis_cluster(
                work / f"cluster-{shards}",
                primaries=shards,
                replicas_per_primary=0,
                slot_ranges=partition_slot_ranges(args.partitions, shards) if args.spread else None,
            ) as cluster,
            running_engine(cluster.url, database_url, work / f"logs-{shards}", **env) as engine,
        ):
            time.sleep(args.settle_s)  # services connected, caches warm, quote rounds flowing
            before = node_stats(cluster)
            report_path = work / f"bench-{shards}.json"
            bench = [
                sys.executable, str(ROOT / "loadtests" / "bench.py"), "--api", engine.api_url,
                "--rate", str(args.rate), "--duration", str(args.duration), "--ws", args.ws,
                "--idle-s", "0", "--json", str(report_path),
            ]  # fmt: skip
            subprocess.run(bench, check=True, cwd=ROOT)
            after = node_stats(cluster)
            report = json.loads(report_path.read_text())
            owners = partitions_by_node(cluster, args.partitions)
    finally:
        drop_database(database_url)
    completed = max(report["confirmed"] + report["failed"], 1)
    cpu = report.get("cpu_ms_per_order", {})
    nodes = {
        port: {
            "cpu_ms_per_order": cpu.get("redis_nodes", {}).get(str(port)),
            "commands_per_order": (after[port]["commands"] - before[port]["commands"]) / completed,
            "keys_at_end": after[port]["keys"],
            "partitions": owners[port],
        }
        for port in after
    }
    return {
        "shards": shards,
        "offered_rate": report["offered_rate"],
        "completed_rate": report["completed_rate"],
        "confirmed": report["confirmed"],
        "failed": report["failed"],
        "lost": report["lost"],
        "latency_ms": report["latency_ms"],
        "engine_cpu_ms_per_order": cpu.get("services_total"),
        "engine_services_cpu_ms_per_order": cpu.get("services"),
        "redis_cpu_ms_per_order": cpu.get("redis"),
        "postgres_cpu_ms_per_order": cpu.get("postgres"),
        "machine": report.get("machine"),
        "nodes": nodes,
        "slot_of_partition": {p: key_slot(tag(p).encode()) for p in all_partitions(args.partitions)},
    }


def print_run(run: dict[str, Any]) -> None:
    latency = run["latency_ms"]
    print(
        f"\n{run['shards']} shard(s): completed {run['completed_rate']:.1f}/s of {run['offered_rate']:.0f}/s offered,"
        f" lost {run['lost']}, failed {run['failed']}; submit→confirmed p50 {latency['p50']:.0f} ms"
        f" p99 {latency['p99']:.0f} ms"
    )
    print(
        f"  CPU ms/order: engine {run['engine_cpu_ms_per_order']:.2f}, Redis (all primaries)"
        f" {run['redis_cpu_ms_per_order']:.3f}, PostgreSQL {run['postgres_cpu_ms_per_order']:.2f}"
    )
    for port, node in sorted(run["nodes"].items()):
        cpu = node["cpu_ms_per_order"]
        print(
            f"  primary :{port}  partitions {node['partitions']}  CPU ms/order {cpu if cpu is None else f'{cpu:.3f}'}"
            f"  commands/order {node['commands_per_order']:.1f}  keys {node['keys_at_end']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", default="1,2,3", help="comma-separated primary counts")
    parser.add_argument("--partitions", type=int, default=6, help="PARTITIONS: spread over the primaries")
    parser.add_argument("--rate", type=float, default=60)
    parser.add_argument("--duration", type=float, default=40)
    parser.add_argument("--settle-s", type=float, default=5)
    parser.add_argument("--ws", choices=("order", "user"), default="order", help="bench.py's --ws")
    parser.add_argument(
        "--no-latencies",
        dest="latencies",
        action="store_false",
        help="SIM_LATENCY_SCALE=0 and SIM_FAILURE_RATE=0: the throughput regime, where only CPU limits",
    )
    parser.add_argument(
        "--equal-ranges",
        dest="spread",
        action="store_false",
        help="give the primaries equal slot ranges (Redis's default) instead of partition_slot_ranges",
    )
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", default="", help="a file, or a folder such as reports/")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="shard-bench-") as tmp:
        for shards in (int(n) for n in args.shards.split(",")):
            runs.append(run_once(shards, args, Path(tmp)))
            print_run(runs[-1])
    if args.json:
        path = Path(args.json)
        if args.json.endswith("/") or path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            path = path / f"shard-bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(runs, indent=2, default=str) + "\n")
        print(f"report written to {path}")


if __name__ == "__main__":
    main()
