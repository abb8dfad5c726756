"""The history schema, db-sync's batch writer and the API's history reads, against a real PostgreSQL.

Each session works in its own freshly created database (`dbsync_test_<random>`), dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from shared.persistence.batch import OrphanEventsError, make_engine, persist_batch
from shared.persistence.history import get_order as history_get_order
from shared.persistence.history import list_orders, make_async_engine
from shared.persistence.migrate import alembic_config, upgrade
from shared.persistence.models import metadata

ROOT = Path(__file__).resolve().parents[2]
BASE_URL = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MARKET = ["pending", "routing", "building", "submitted", "confirmed"]


def _sa_url(url: str) -> sa.URL:
    parsed = sa.make_url(url)
    return parsed.set(drivername="postgresql+psycopg")


@pytest.fixture(scope="session")
def db_url() -> Iterator[str]:
    name = f"dbsync_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(_sa_url(BASE_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = _sa_url(BASE_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    with eng.begin() as conn:
        conn.execute(sa.text("TRUNCATE orders CASCADE"))
    yield eng
    eng.dispose()


def event(oid: uuid.UUID, seq: int, status: str, *, at: datetime = T0, attempt: int = 1, **extra: Any) -> dict:
    message = {
        "type": "status", "orderId": str(oid), "seq": seq, "status": status,
        "timestamp": (at + timedelta(seconds=seq)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "orderType": "market", "attempt": attempt, "dex": None, "quotes": None, "txHash": None,
        "executedPrice": None, "amountOut": None, "error": None, "errorMessage": None, "clientOrderId": "c-1",
    }  # fmt: skip
    message.update(extra)
    return message


def spec(oid: uuid.UUID, *, at: datetime = T0, user: str | None = "alice", type_: str = "market",
         token_in: str = "SOL", token_out: str = "USDC", amount: str = "1.5") -> dict:  # fmt: skip
    return {
        "orderId": str(oid), "type": type_, "tokenIn": token_in, "tokenOut": token_out, "amount": amount,
        "slippageBps": 50, "userId": user, "clientOrderId": "c-1", "idempotencyKey": None,
        "createdAt": at.isoformat().replace("+00:00", "Z"), "expiresAt": None,
        "limitPrice": "150.25" if type_ == "limit" else None,
        "trigger": {"kind": "listing"} if type_ == "sniper" else None,
    }  # fmt: skip


def entry(message: dict, order_spec: dict | None = None, *, user: str = "") -> tuple[bytes, dict]:
    fields = {b"o": message["orderId"].encode(), b"u": user.encode(), b"e": orjson.dumps(message)}
    if order_spec is not None:
        fields[b"s"] = orjson.dumps(order_spec)
    return f"{message['seq']}-{uuid.uuid4().int % 1000}".encode(), fields


def lifecycle(oid: uuid.UUID, statuses: list[str] = MARKET, **spec_kwargs: Any) -> list[tuple[bytes, dict]]:
    at = spec_kwargs.get("at", T0)
    extras = {
        "routing": {"dex": "raydium", "quotes": {"raydium": "150.1", "meteora": "149.9"}},
        "submitted": {"dex": "raydium", "txHash": "tx-1"},
        "confirmed": {"dex": "raydium", "txHash": "tx-1", "executedPrice": "150.1", "amountOut": "225.15"},
        "failed": {"error": "slippage_exceeded", "errorMessage": "output below minimum"},
    }
    out = []
    for seq, status in enumerate(statuses, start=1):
        message = event(oid, seq, status, at=at, **extras.get(status, {}))
        out.append(entry(message, spec(oid, **spec_kwargs) if seq == 1 else None))
    return out


def snapshot(eng: sa.Engine) -> tuple[list, list]:
    with eng.connect() as conn:
        orders = conn.execute(sa.text("SELECT * FROM orders ORDER BY order_id")).all()
        events = conn.execute(sa.text("SELECT * FROM order_events ORDER BY order_id, seq")).all()
    return orders, events


# --- migrations ---------------------------------------------------------------------------------------------
def test_migrate_twice_and_concurrently(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    env = {**os.environ, "DATABASE_URL": db_url}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "shared.persistence.migrate"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for _ in range(2)
    ]
    for run in runs:
        output, _ = run.communicate(timeout=60)
        assert run.returncode == 0, output.decode()
    eng = make_engine(db_url)
    with eng.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == head
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    eng.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_migrate_in_parallel_threads(db_url: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(db_url)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --- persist_batch ------------------------------------------------------------------------------------------
def test_persist_batch_is_idempotent(engine: sa.Engine) -> None:
    batch = [e for _ in range(3) for e in lifecycle(uuid.uuid4())]
    persist_batch(engine, batch)
    first = snapshot(engine)
    persist_batch(engine, batch)
    persist_batch(engine, batch + batch)  # duplicates inside one batch too
    assert snapshot(engine) == first
    orders, events = first
    assert len(orders) == 3 and len(events) == 15
    row = orders[0]._mapping
    assert (row["status"], row["last_seq"], row["tx_hash"], row["dex"]) == ("confirmed", 5, "tx-1", "raydium")
    assert str(row["executed_price"]) == "150.1" and str(row["amount"]) == "1.5"
    assert row["user_id"] == "alice" and row["spec"]["tokenIn"] == "SOL"
    assert row["updated_at"] == T0 + timedelta(seconds=5) and row["created_at"] == T0


def test_replayed_and_out_of_order_events_never_move_status_backwards(engine: sa.Engine) -> None:
    oid = uuid.uuid4()
    full = lifecycle(oid)
    persist_batch(engine, [full[0], full[3]])  # pending, then submitted (routing/building not seen yet)
    persist_batch(engine, [full[2], full[1]])  # older events arrive late, unsorted
    orders, events = snapshot(engine)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert (orders[0].status, orders[0].last_seq, orders[0].tx_hash) == ("submitted", 4, "tx-1")
    persist_batch(engine, [full[4]])
    persist_batch(engine, full[:3])  # a replay of the beginning
    orders, events = snapshot(engine)
    assert (orders[0].status, orders[0].last_seq, str(orders[0].amount_out)) == ("confirmed", 5, "225.15")
    assert len(events) == 5


def test_failed_order_keeps_last_known_results(engine: sa.Engine) -> None:
    oid = uuid.uuid4()
    persist_batch(engine, lifecycle(oid, ["pending", "routing", "building", "submitted", "failed"]))
    (order,), _ = snapshot(engine)
    assert (order.status, order.error, order.error_message) == (
        "failed",
        "slippage_exceeded",
        "output below minimum",
    )
    assert (order.tx_hash, order.dex, order.attempt) == ("tx-1", "raydium", 1)


def test_orphan_events_and_malformed_entries(engine: sa.Engine) -> None:
    oid, other = uuid.uuid4(), uuid.uuid4()
    orphan = lifecycle(oid)[1:]
    with pytest.raises(OrphanEventsError):
        persist_batch(engine, orphan + lifecycle(other))
    assert snapshot(engine) == ([], [])  # rolled back as a whole
    broken = (b"9-9", {b"o": b"not-a-uuid", b"e": b"{not json"})
    persist_batch(engine, [broken, *orphan, *lifecycle(other), (b"10-0", None)], allow_orphans=True)
    orders, events = snapshot(engine)
    assert [o.order_id for o in orders] == [other] and len(events) == 5


# --- history (read side) ------------------------------------------------------------------------------------
@pytest.fixture
def history(engine: sa.Engine) -> dict[str, list[uuid.UUID]]:
    """25 orders a minute apart: users alice/bob, three types, two pairs, some failed."""
    made: dict[str, list[uuid.UUID]] = {"all": []}
    batch = []
    for i in range(25):
        oid = uuid.uuid4()
        type_ = ("market", "limit", "sniper")[i % 3]
        statuses = MARKET[:-1] + ["failed"] if i % 5 == 0 else MARKET
        kwargs = {"at": T0 + timedelta(minutes=i), "user": "alice" if i % 2 else "bob", "type_": type_}
        if i % 4 == 0:
            kwargs.update(token_in="USDC", token_out="SOL")
        batch += lifecycle(oid, statuses, **kwargs)
        made["all"].append(oid)
    # two orders created in the same millisecond: the cursor must still split them cleanly
    for _ in range(2):
        oid = uuid.uuid4()
        batch += lifecycle(oid, at=T0 + timedelta(minutes=30), user=None, amount="0.0000001")
        made["all"].append(oid)
    persist_batch(engine, batch)
    return made


async def _all_pages(aengine: Any, limit: int, **filters: Any) -> list[dict]:
    out, cursor, pages = [], None, 0
    while True:
        page, cursor = await list_orders(aengine, limit=limit, cursor=cursor, **filters)
        out += page
        pages += 1
        assert len(page) <= limit and pages < 100
        if cursor is None:
            return out


async def test_history_pagination_and_filters(db_url: str, history: dict) -> None:
    aengine = make_async_engine(db_url)
    try:
        everything = await _all_pages(aengine, 7)
        assert len(everything) == 27 and len({o["orderId"] for o in everything}) == 27
        keys = [(o["createdAt"], o["orderId"]) for o in everything]
        assert keys == sorted(keys, reverse=True)
        first, cursor = await list_orders(aengine, limit=500)
        assert cursor is None and first == everything
        assert everything[0]["amount"] == "0.0000001" and everything[0]["userId"] is None
        one = everything[-1]
        assert one["createdAt"] == "2026-01-01T12:00:00.000Z" and one["status"] == "failed"
        assert one["error"] == "slippage_exceeded" and one["tokenIn"] == "USDC" and one["slippageBps"] == 50

        def expect(pred: Any) -> list[str]:
            return [o["orderId"] for o in everything if pred(o)]

        cases = [
            ({"status": "failed"}, lambda o: o["status"] == "failed"),
            ({"status": ["failed", "confirmed"]}, lambda o: True),
            ({"type": "limit"}, lambda o: o["type"] == "limit"),
            ({"user_id": "alice"}, lambda o: o["userId"] == "alice"),
            ({"token_in": "USDC"}, lambda o: o["tokenIn"] == "USDC"),
            (
                {"token_out": "USDC", "type": "sniper"},
                lambda o: o["tokenOut"] == "USDC" and o["type"] == "sniper",
            ),
            ({"user_id": "carol"}, lambda o: False),
        ]
        for filters, pred in cases:
            got = [o["orderId"] for o in await _all_pages(aengine, 4, **filters)]
            assert got == expect(pred), filters
            assert got or filters == {"user_id": "carol"}
        limit_order = next(o for o in everything if o["type"] == "limit")
        assert limit_order["limitPrice"] == "150.25"
        for bad in ("garbage", "!!!", "bm90IGpzb24", "WzEsMl0"):
            with pytest.raises(ValueError):
                await list_orders(aengine, cursor=bad)
        with pytest.raises(ValueError):
            await list_orders(aengine, limit=0)
        assert len((await list_orders(aengine, limit=10_000))[0]) == 27
    finally:
        await aengine.dispose()


async def test_get_order_returns_events_in_seq_order(db_url: str, engine: sa.Engine) -> None:
    oid = uuid.uuid4()
    entries = lifecycle(oid, ["pending", "routing", "building", "submitted", "failed"])
    persist_batch(engine, list(reversed(entries[2:])) + entries[:2])
    aengine = make_async_engine(db_url)
    try:
        order = await history_get_order(aengine, str(oid))
        assert order is not None
        assert order["orderId"] == str(oid) and order["status"] == "failed"
        assert [e["seq"] for e in order["events"]] == [1, 2, 3, 4, 5]
        assert order["events"][1]["quotes"] == {"raydium": "150.1", "meteora": "149.9"}
        assert order["events"][0] == orjson.loads(entries[0][1][b"e"])
        assert await history_get_order(aengine, uuid.uuid4()) is None
        with pytest.raises(ValueError):
            await history_get_order(aengine, "not-a-uuid")
    finally:
        await aengine.dispose()


def test_large_batch_is_split_into_few_multi_row_statements(engine: sa.Engine) -> None:
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    batch = [e for _ in range(1500) for e in lifecycle(uuid.uuid4(), MARKET[:2])]
    persist_batch(engine, batch)
    orders, events = snapshot(engine)
    assert len(orders) == 1500 and len(events) == 3000 and {o.status for o in orders} == {"routing"}
    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert len(writes) <= 6, f"{len(writes)} write statements for 3000 entries"


# --- first entries rebuilt inside the batch's transaction -----------------------------------------------------
def test_missing_first_entries_are_rebuilt_into_the_same_transaction(engine: sa.Engine) -> None:
    oid, gone = uuid.uuid4(), uuid.uuid4()
    full = lifecycle(oid)
    asked: list[set[str]] = []

    def rebuild(order_ids: set[str]) -> list:
        asked.append(set(order_ids))
        return [(None, full[0][1])] if str(oid) in order_ids else []

    rollbacks: list[object] = []
    sa.event.listen(engine, "rollback", rollbacks.append)
    persist_batch(engine, full[2:4], rebuild=rebuild)  # building, submitted: pending is elsewhere
    assert asked == [{str(oid)}]
    assert rollbacks == []  # one transaction, not a failed one and a retry
    orders, events = snapshot(engine)
    assert [e.seq for e in events] == [1, 3, 4]
    assert (orders[0].status, orders[0].last_seq, orders[0].tx_hash, orders[0].user_id) == (
        "submitted",
        4,
        "tx-1",
        "alice",
    )
    # what cannot be rebuilt still raises, and rolls back the rebuilt ones with it
    with pytest.raises(OrphanEventsError) as caught:
        persist_batch(engine, lifecycle(gone)[1:2] + full[4:], rebuild=rebuild)
    assert caught.value.order_ids == {str(gone)} and rollbacks  # (the listener does see rollbacks)
    assert snapshot(engine)[0][0].status == "submitted"


def test_a_rebuilt_order_another_replica_stored_meanwhile_is_updated_not_folded(engine: sa.Engine) -> None:
    oid = uuid.uuid4()
    full = lifecycle(oid)

    def rebuild(order_ids: set[str]) -> list:
        # the replica that held seq 1 and 2 commits them while this batch's transaction is open
        persist_batch(engine, full[:2])
        return [(None, full[0][1])]

    persist_batch(engine, full[3:], rebuild=rebuild)  # submitted, confirmed
    orders, events = snapshot(engine)
    assert [e.seq for e in events] == [1, 2, 4, 5]
    row = orders[0]
    assert (row.status, row.last_seq, row.dex, str(row.executed_price)) == ("confirmed", 5, "raydium", "150.1")
    assert row.updated_at == T0 + timedelta(seconds=5)
