"""db-sync's CPU per order, measured through the real code against a real PostgreSQL (and Redis).

    uv run python loadtests/dbsync_bench.py --orders 5000 --batch 250            # persist_batch only
    uv run python loadtests/dbsync_bench.py --orders 5000 --stream --rate 250    # XADD -> StreamSyncer -> PG

Synthetic market orders with the engine's own event shapes (pending + spec, routing with both quotes,
building with the transaction, submitted, confirmed), interleaved as they reach the stream when orders
arrive at `--rate` and take ~25 ms (2 % ten times longer), as at target 1. `persist` mode feeds them to
`persist_batch` in consecutive slices of `--batch` entries. `--stream` starts a private redis-server, lets
a producer process XADD them on that schedule and runs the real `StreamSyncer` (XREADGROUP, linger, XACK,
trim) until it has acknowledged them all. Prints CPU ms per order of this process (db-sync's side), of the
PostgreSQL backends serving it and, with `--stream`, of the private Redis. Works in a scratch database
(`dbsync_bench_<hex>`) on the server of `--database` (default `postgresql://postgres@127.0.0.1:5432/test`),
dropped afterwards. Compare CPU, not wall time: the machine is shared.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
import redis
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from shared import redis_keys  # noqa: E402
from shared.persistence.batch import make_engine, persist_batch  # noqa: E402
from shared.persistence.migrate import upgrade  # noqa: E402
from shared.persistence.sync import StreamSyncer  # noqa: E402

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/test"
#: Offsets (s) of a market order's five events after its submission, each scaled by 0.5-3x: at target 1
#: (SIM_LATENCY_SCALE=0, 250 orders/s) submit->confirmed takes ~25-30 ms at p50 and ~0.3 s at p99.
OFFSETS = (0.0, 0.008, 0.012, 0.017, 0.025)
TX = "29LuitkppwTHyNQN8qsxvCK5ZVUYNP6B1SF5QjADxaBcagUebQ3tWSBjeALJUKpub2iZSGwtrDkh3VH19DrbpqzP"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _quote(dex: str, amount: str, rng: random.Random) -> dict[str, Any]:
    price = f"{150 + rng.random():.9f}"
    return {
        "dex": dex, "amountIn": amount, "amountOut": f"{float(amount) * float(price):.6f}",
        "fee": "0.0025" if dex == "raydium" else "0.002090", "price": price, "midPrice": f"{150.2 + rng.random():.9f}",
        "priceImpact": "0.000010938403", "liquidity": "19999903.083669", "ts": time.time(), "latencyMs": 0,
    }  # fmt: skip


def order_entries(index: int, t0: datetime, rate: float, rng: random.Random) -> list[tuple[float, dict[bytes, bytes]]]:
    """One market order's five stream entries, each with the time (s from t0) it reaches the stream."""
    oid, user = str(uuid.uuid4()), f"bench-{index % 10}"
    amount = f"{1 + index % 100 / 100:.2f}"
    start = index / rate
    created = _iso(t0 + timedelta(seconds=start))
    order_spec = {
        "orderId": oid, "type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": amount,
        "slippageBps": 500, "nativeSolIn": True, "nativeSolOut": False, "userId": user, "clientOrderId": None,
        "idempotencyKey": None, "createdAt": created, "limitPrice": None, "trigger": None, "expiresAt": None,
        "owner": None,
    }  # fmt: skip
    base = {
        "type": "status", "orderId": oid, "orderType": "market", "attempt": 1, "dex": "raydium", "quotes": None,
        "txHash": None, "executedPrice": None, "amountOut": None, "error": None, "errorMessage": None,
        "clientOrderId": None,
    }  # fmt: skip
    quotes = {"raydium": _quote("raydium", amount, rng), "meteora": _quote("meteora", amount, rng)}
    transaction = {"dex": "raydium", "txHash": TX, "amountIn": amount, "minAmountOut": "207.828644",
                   "instructions": ["wrapSol", "swap:raydium"]}  # fmt: skip
    stages = [
        ("pending", {"attempt": None, "dex": None}),
        ("routing", {"quotes": quotes, "venueLatencyMs": 0}),
        ("building", {"transaction": transaction}),
        ("submitted", {"txHash": TX, "venueLatencyMs": 0}),
        ("confirmed", {"txHash": TX, "executedPrice": "149.829854795", "amountOut": "218.751588", "venueLatencyMs": 0}),
    ]
    scale = 0.5 + 2.5 * rng.random() + (10 if rng.random() < 0.02 else 0)  # one order's events keep their order
    out = []
    for seq, ((status, extra), offset) in enumerate(zip(stages, OFFSETS, strict=True), start=1):
        at = start + offset * scale
        message = {**base, "seq": seq, "status": status, "timestamp": _iso(t0 + timedelta(seconds=at)), **extra}
        fields = {b"o": oid.encode(), b"u": user.encode(), b"e": orjson.dumps(message)}
        if seq == 1:
            fields[b"s"] = orjson.dumps(order_spec)
        out.append((at, fields))
    return out


def timeline(orders: int, rate: float, seed: int = 7) -> list[tuple[float, dict[bytes, bytes]]]:
    rng, t0 = random.Random(seed), datetime.now(UTC)
    # An order's events keep their order in the stream (each append is a CAS on seq); stable sort by time
    # with seq as the tie-break keeps that.
    entries = [
        (at, seq, fields) for i in range(orders) for seq, (at, fields) in enumerate(order_entries(i, t0, rate, rng))
    ]
    entries.sort(key=lambda item: (item[0], item[1]))
    return [(at, fields) for at, _seq, fields in entries]


# --- CPU accounting ---------------------------------------------------------------------------------------
def _backend_pids(engine: sa.Engine) -> list[int]:
    query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'"
    with engine.connect() as conn:
        return list(conn.execute(sa.text(query)).scalars())


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


# --- scratch servers --------------------------------------------------------------------------------------
def _scratch_database(base: str) -> tuple[str, sa.Engine]:
    name = f"dbsync_bench_{uuid.uuid4().hex[:10]}"
    url = sa.make_url(base).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    scratch = url.set(database=name).render_as_string(hide_password=False)
    upgrade(scratch)
    return scratch, admin


def _drop(admin: sa.Engine, url: str) -> None:
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_redis(folder: str) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server") or str(Path(sys.executable).with_name("redis-server"))
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


def _produce(url: str, stream: str, items: list[tuple[float, dict[bytes, bytes]]], start: float) -> None:
    """XADD every entry at its time (in small pipelines, as several writers would), keeping each order's hash
    and event log as the engine does, so a replica can rebuild a first entry another one holds."""
    client = redis.Redis.from_url(url)
    i = 0
    while i < len(items):
        now = time.time() - start
        pipe = client.pipeline(transaction=False)
        while i < len(items) and items[i][0] <= now:
            fields = items[i][1]
            order_id = fields[b"o"].decode()
            if b"s" in fields:
                pipe.hset(redis_keys.order(order_id), "spec", fields[b"s"])
            pipe.rpush(redis_keys.order_events(order_id), fields[b"e"])
            pipe.xadd(stream, fields)
            i += 1
        pipe.execute()
        time.sleep(0.002)
    client.close()


# --- the two modes ----------------------------------------------------------------------------------------
def run_persist(engine: sa.Engine, items: list[dict[bytes, bytes]], batch: int) -> float:
    for i in range(0, len(items), batch):
        persist_batch(engine, [(f"{i}-0".encode(), fields) for fields in items[i : i + batch]])
    return 0.0


def run_stream(url: str, timed: list[tuple[float, dict[bytes, bytes]]], args: argparse.Namespace) -> dict:
    """`--replicas` syncers (each its own engine and Redis client, as separate processes would have; here
    threads of this process, so its CPU time is their sum) drain the producer's stream."""
    folder = tempfile.mkdtemp(prefix="dbsync-bench-redis-")
    proc, redis_url = _start_redis(folder)
    clients = [redis.Redis.from_url(redis_url) for _ in range(args.replicas)]
    engines = [make_engine(url, pool_pre_ping=args.pre_ping) for _ in range(args.replicas)]
    stream = "stream:events"
    try:
        syncers = [
            StreamSyncer(engine, client, batch_size=args.batch_size, block_ms=200, linger_ms=args.linger_ms)
            for engine, client in zip(engines, clients, strict=True)
        ]
        syncers[0].ensure_group()
        for engine in engines:  # connect before measuring
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        pids = [pid for engine in engines for pid in _backend_pids(engine)]
        redis_cpu0, pg0 = _cpu_s([proc.pid]), _cpu_s(sorted(set(pids)))
        start = time.time() + 0.5
        producer = multiprocessing.get_context("spawn").Process(target=_produce, args=(redis_url, stream, timed, start))
        producer.start()
        stop = threading.Event()
        cpu0 = time.process_time()
        threads = [threading.Thread(target=syncer.run, args=(stop,)) for syncer in syncers]
        for thread in threads:
            thread.start()
        while sum(syncer.persisted_entries for syncer in syncers) < len(timed):
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join()
        cpu = time.process_time() - cpu0
        pids = sorted(set(pids) | {pid for engine in engines for pid in _backend_pids(engine)})
        producer.join()
        return {
            "cpu": cpu,
            "pg_cpu": _cpu_s(pids) - pg0,
            "redis_cpu": _cpu_s([proc.pid]) - redis_cpu0,
            "batches": sum(syncer.batches for syncer in syncers),
            "rebuilt": sum(getattr(syncer, "rebuilt_entries", 0) for syncer in syncers),  # (older code: none)
            "split": [(syncer.batches, syncer.persisted_entries) for syncer in syncers],
        }
    finally:
        for client in clients:
            client.close()
        for engine in engines:
            engine.dispose()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=250.0, help="orders/s the timeline is laid out at")
    parser.add_argument("--batch", type=int, default=250, help="persist mode: entries per persist_batch call")
    parser.add_argument("--stream", action="store_true", help="through Redis and the real StreamSyncer, live")
    parser.add_argument("--batch-size", type=int, default=500, help="stream mode: DBSYNC_BATCH_SIZE")
    parser.add_argument("--linger-ms", type=int, default=100, help="stream mode: DBSYNC_LINGER_MS")
    parser.add_argument("--pre-ping", action="store_true", help="ping on every checkout (db-sync no longer does)")
    parser.add_argument("--replicas", type=int, default=1, help="stream mode: db-sync replicas in the group")
    parser.add_argument("--repeat", type=int, default=3, help="persist mode: rounds (fresh orders each)")
    args = parser.parse_args()

    url, admin = _scratch_database(args.database)
    engine = make_engine(url, pool_pre_ping=args.pre_ping)
    try:
        run_persist(engine, [f for _at, f in timeline(200, args.rate, seed=1)], args.batch)  # warm up, connect
        pids = _backend_pids(engine)
        if args.stream:
            timed = timeline(args.orders, args.rate)
            result = run_stream(url, timed, args)
            n = args.orders
            print(
                f"stream: {n} orders at {args.rate:g}/s, {len(timed)} entries in {result['batches']} batches "
                f"({args.replicas} replica(s): {result['split']}, {result['rebuilt']} first entries rebuilt): "
                f"db-sync {result['cpu'] / n * 1000:.3f}  postgres {result['pg_cpu'] / n * 1000:.3f}  "
                f"redis {result['redis_cpu'] / n * 1000:.3f}  CPU ms/order"
            )
        else:
            for round_ in range(args.repeat):
                items = [f for _at, f in timeline(args.orders, args.rate, seed=100 + round_)]
                pg0, cpu0 = _cpu_s(pids), time.process_time()
                run_persist(engine, items, args.batch)
                cpu, pg = time.process_time() - cpu0, _cpu_s(pids) - pg0
                n = args.orders
                print(
                    f"persist: {n} orders, {len(items)} entries in batches of {args.batch}: "
                    f"db-sync {cpu / n * 1000:.3f}  postgres {pg / n * 1000:.3f}  CPU ms/order"
                )
        with engine.connect() as conn:
            counts = conn.execute(
                sa.text("SELECT count(*), count(*) FILTER (WHERE status = 'confirmed') FROM orders")
            ).one()
        print(f"rows: {counts[0]} orders, {counts[1]} confirmed")
    finally:
        engine.dispose()
        _drop(admin, url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
