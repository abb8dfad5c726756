"""db-sync survives a PostgreSQL outage: nothing is acked while it is down, all lands once when it is back.

The syncer runs in a thread against PostgreSQL reached through a TCP proxy that this test controls; the
"outage" closes every proxied connection and turns new ones away. Its stream and group names are unique
to the run so that nothing else on the Redis database is touched.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import orjson
import pytest
import redis
import sqlalchemy as sa
from loguru import logger
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.persistence.migrate import upgrade
from shared.persistence.sync import StreamSyncer, make_engine

BASE_URL = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/8"
#: A market order whose first routing attempt failed over to a second one: six events.
STATUSES = ["pending", "routing", "routing", "building", "submitted", "confirmed"]


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `target` (a (host, port) pair or a unix socket path) until `cut()`."""

    def __init__(self, target: tuple[str, int] | str) -> None:
        self.target, self.up, self.closed = target, True, False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.lock, self.sockets = threading.Lock(), set()
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _upstream(self) -> socket.socket:
        if isinstance(self.target, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.target)
            return sock
        return socket.create_connection(self.target, timeout=5)

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = self._upstream()
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self.lock:
                self.sockets |= {client, upstream}
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def _drop(self, *socks: socket.socket) -> None:
        for sock in socks:
            with self.lock:
                self.sockets.discard(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        self.up = False
        with self.lock:
            victims = list(self.sockets)
        self._drop(*victims)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


def _base() -> sa.URL:
    return sa.make_url(BASE_URL).set(drivername="postgresql+psycopg")


@pytest.fixture
def database() -> Iterator[str]:
    name = f"dbsync_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(_base(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = _base().set(database=name)
    upgrade(url.render_as_string(hide_password=False))
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def proxied(database: str) -> Iterator[tuple[TcpProxy, str]]:
    url = sa.make_url(database)
    socket_dir = url.query.get("host")
    if url.host is None or (isinstance(socket_dir, str) and socket_dir.startswith("/")):
        directory = socket_dir if isinstance(socket_dir, str) else "/var/run/postgresql"
        proxy = TcpProxy(f"{directory}/.s.PGSQL.{url.port or 5432}")
        url = url.difference_update_query(["host"])
    else:
        proxy = TcpProxy((url.host, url.port or 5432))
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.close()


def _events(orders: list[uuid.UUID]) -> list[dict[bytes, bytes]]:
    """Interleaved lifecycles: every order's seq n comes before any order's seq n+1."""
    out = []
    for seq, status in enumerate(STATUSES, start=1):
        for oid in orders:
            message = {"type": "status", "orderId": str(oid), "seq": seq, "status": status,
                       "timestamp": f"2026-01-01T12:00:{seq:02d}.000Z", "orderType": "market",
                       "attempt": 1 if seq <= 2 else 2, "txHash": "tx" if seq >= 5 else None,
                       "executedPrice": "150" if seq == 6 else None}  # fmt: skip
            fields = {b"o": str(oid).encode(), b"u": b"u1", b"e": orjson.dumps(message)}
            if seq == 1:
                fields[b"s"] = orjson.dumps({"orderId": str(oid), "type": "market", "tokenIn": "SOL",
                                             "tokenOut": "USDC", "amount": "2", "slippageBps": 50,
                                             "createdAt": "2026-01-01T12:00:00Z"})  # fmt: skip
            out.append(fields)
    return out


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_db_sync_catches_up_after_postgres_outage(database: str, proxied: tuple[TcpProxy, str]) -> None:
    proxy, proxy_url = proxied
    r = redis.Redis.from_url(REDIS_URL)
    tag = uuid.uuid4().hex[:8]
    stream, group = f"test:dbsync:{tag}:events", f"db-sync-{tag}"
    direct = make_engine(database)
    engine = make_engine(proxy_url, connect_args={"connect_timeout": 2}, pool_pre_ping=False)  # as db-sync runs
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    syncer = StreamSyncer(engine, r, stream=stream, group=group, keep_persisted_ms=0, batch_size=40, block_ms=50,
                          min_backoff_s=0.2, max_backoff_s=1.0)  # fmt: skip
    stop = threading.Event()
    runner = threading.Thread(target=syncer.run, args=(stop,), daemon=True)

    def counts() -> tuple[int, int]:
        with direct.connect() as conn:
            return (conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one(),
                    conn.execute(sa.text("SELECT count(*) FROM order_events")).scalar_one())  # fmt: skip

    orders = [uuid.uuid4() for _ in range(50)]
    events = _events(orders)
    assert len(events) == 300
    try:
        runner.start()
        for fields in events[:120]:
            r.xadd(stream, fields)
        _wait(lambda: counts() == (50, 120), 20, "the first 120 events")
        _wait(lambda: r.xlen(stream) == 0, 5, "the persisted entries to be trimmed")

        proxy.cut()
        for i, fields in enumerate(events[120:]):  # 180 more over ~5 s while PostgreSQL is unreachable
            r.xadd(stream, fields)
            if i % 3 == 2:
                time.sleep(0.085)
        assert counts() == (50, 120)
        assert r.xlen(stream) == 180, "entries must not be trimmed while they are not persisted"
        assert syncer.stats()["postgresDown"]
        # redeliveries of already persisted entries must not create anything twice
        for fields in events[:10] + events[150:160]:
            r.xadd(stream, fields)
        proxy.restore()

        _wait(lambda: counts() == (50, 300), 30, "the backlog to drain")
        _wait(lambda: r.xlen(stream) == 0, 10, "the stream to be trimmed")
        assert r.xpending(stream, group)["pending"] == 0
        with direct.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT o.order_id, o.status, o.last_seq, o.tx_hash, o.executed_price, o.user_id, "
                "       count(e.seq) AS n, count(DISTINCT e.seq) AS d, min(e.seq) AS lo, max(e.seq) AS hi "
                "FROM orders o JOIN order_events e USING (order_id) GROUP BY o.order_id"
            )).all()  # fmt: skip
        assert {row.order_id for row in rows} == set(orders)
        for row in rows:
            assert (row.n, row.d, row.lo, row.hi) == (6, 6, 1, 6)
            assert (row.status, row.last_seq, row.tx_hash, str(row.executed_price)) == (
                "confirmed",
                6,
                "tx",
                "150",
            )
            assert row.user_id == "u1"
        outage_logs = [w for w in warnings if w.startswith("PostgreSQL unavailable")]
        assert len(outage_logs) == 1, warnings
        assert syncer.stats()["persistedEntries"] >= 320 and not syncer.stats()["postgresDown"]
        assert proxy.accepted >= 2  # it really reconnected through the proxy
    finally:
        stop.set()
        runner.join(10)
        logger.remove(sink)
        r.delete(stream)
        r.close()
        engine.dispose()
        direct.dispose()
    assert not runner.is_alive()


def test_db_sync_claims_dead_consumers_and_rides_out_redis_outage(database: str) -> None:
    real = redis.Redis.from_url(REDIS_URL)
    where = real.connection_pool.connection_kwargs
    proxy = TcpProxy((where.get("host", "127.0.0.1"), int(where.get("port", 6379))))
    # no client-side retries: the outage must reach the syncer's own back-off
    via_proxy = redis.Redis(host="127.0.0.1", port=proxy.port, db=int(where.get("db", 0)), socket_timeout=5,
                            password=where.get("password"), retry=Retry(NoBackoff(), 0))  # fmt: skip
    tag = uuid.uuid4().hex[:8]
    stream, group = f"test:dbsync:{tag}:events", f"db-sync-{tag}"
    engine = make_engine(database)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    orders = [uuid.uuid4() for _ in range(10)]
    events = _events(orders)
    # a consumer that read the first 25 entries and died before acknowledging them
    real.xgroup_create(stream, group, id="0", mkstream=True)
    for fields in events[:25]:
        real.xadd(stream, fields)
    assert len(real.xreadgroup(group, "dead-consumer", {stream: ">"}, count=25)[0][1]) == 25
    syncer = StreamSyncer(engine, via_proxy, stream=stream, group=group, keep_persisted_ms=0, batch_size=10,
                          block_ms=50, claim_idle_ms=200, min_backoff_s=0.1, max_backoff_s=0.5)  # fmt: skip
    stop = threading.Event()
    runner = threading.Thread(target=syncer.run, args=(stop,), daemon=True)

    def count() -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM order_events")).scalar_one()

    try:
        time.sleep(0.3)  # let the dead consumer's entries become claimable
        runner.start()
        _wait(lambda: count() == 25, 20, "the dead consumer's entries")
        proxy.cut()
        for fields in events[25:45]:
            real.xadd(stream, fields)
        time.sleep(1.5)
        assert count() == 25
        proxy.restore()
        _wait(lambda: count() == 45, 20, "the entries added while Redis was unreachable")
        real.xgroup_destroy(stream, group)  # Redis lost its state: the group is recreated, at id 0
        for fields in events[45:]:
            real.xadd(stream, fields)
        _wait(lambda: count() == 60, 20, "the entries after the group was recreated")
        _wait(lambda: real.xlen(stream) == 0, 10, "the stream to be trimmed")
        assert len([w for w in warnings if w.startswith("Redis unavailable")]) == 1, warnings
        assert any("claimed" in w for w in warnings)
    finally:
        stop.set()
        runner.join(10)
        logger.remove(sink)
        real.delete(stream)
        real.close()
        via_proxy.close()
        proxy.close()
        engine.dispose()
    assert not runner.is_alive()


def test_a_connection_postgres_closed_is_replaced_at_once(database: str) -> None:
    """No pre-ping in db-sync: a batch that meets a pooled connection PostgreSQL closed (restart, idle timeout)
    is retried at once on a new one, with no back-off and no outage warning."""
    r = redis.Redis.from_url(REDIS_URL)
    tag = uuid.uuid4().hex[:8]
    stream, group = f"test:dbsync:{tag}:events", f"db-sync-{tag}"
    engine = make_engine(database, pool_pre_ping=False)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    syncer = StreamSyncer(engine, r, stream=stream, group=group, block_ms=50, min_backoff_s=5.0)
    events = _events([uuid.uuid4() for _ in range(5)])
    try:
        syncer.ensure_group()
        for fields in events[:10]:
            r.xadd(stream, fields)
        assert syncer.step() == 10
        with engine.connect() as conn:  # the pooled connection db-sync used
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with make_engine(database).connect() as admin:
            assert admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        for fields in events[10:]:
            r.xadd(stream, fields)
        started = time.monotonic()
        assert syncer.step() == 20
        assert time.monotonic() - started < 2.5, "retried after a back-off (5 s) instead of at once"
        assert warnings == [] and not syncer.stats()["postgresDown"]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM order_events")).scalar_one() == 30
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        logger.remove(sink)
        r.delete(stream)
        r.close()
        engine.dispose()
