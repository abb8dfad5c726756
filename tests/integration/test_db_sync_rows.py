"""db-sync writes exactly the rows it always wrote: a fixed corpus of entries against a golden snapshot.

The corpus covers every column and the awkward inputs (exponent and trailing-zero decimals, offsets other
than UTC, microseconds, unicode and quoting, floats and big integers inside payloads, a user id only in the
entry, duplicates, out-of-order and orphan events, malformed entries and entries PostgreSQL rejects). The
golden file `data/db_sync_rows.json` was written by the `INSERT ... SELECT FROM unnest(arrays)` writer that
preceded the JSON-document one: any change to how a batch travels to PostgreSQL must leave it unchanged.
Regenerate it (only for a deliberate schema or semantics change) with `DBSYNC_WRITE_GOLDEN=1`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as sync_redis
import sqlalchemy as sa

from shared.persistence.batch import make_engine
from shared.persistence.sync import StreamSyncer

GOLDEN = Path(__file__).with_name("data") / "db_sync_rows.json"


def _oid(n: int) -> str:
    return str(uuid.UUID(int=0x5EED_0000_0000_4000_8000_0000_0000_0000 + n))


def _event(n: int, seq: int, status: str, ts: str, **extra: Any) -> dict[str, Any]:
    message = {
        "type": "status", "orderId": _oid(n), "seq": seq, "status": status, "timestamp": ts,
        "orderType": "market", "attempt": 1, "dex": None, "quotes": None, "txHash": None, "executedPrice": None,
        "amountOut": None, "error": None, "errorMessage": None, "clientOrderId": None,
    }  # fmt: skip
    message.update(extra)
    return message


def _spec(n: int, **extra: Any) -> dict[str, Any]:
    spec = {
        "orderId": _oid(n), "type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1.5",
        "slippageBps": 50, "userId": "alice", "clientOrderId": None, "idempotencyKey": None,
        "createdAt": "2026-01-01T12:00:00.000Z", "limitPrice": None, "trigger": None, "expiresAt": None,
        "owner": None,
    }  # fmt: skip
    spec.update(extra)
    return {k: v for k, v in spec.items() if v is not _ABSENT}


_ABSENT = object()


def _entry(message: dict | bytes, spec: dict | None = None, *, user: str = "u-entry", oid: str | None = None):
    raw = message if isinstance(message, bytes) else orjson.dumps(message)
    fields = {b"o": (oid or orjson.loads(raw)["orderId"]).encode(), b"u": user.encode(), b"e": raw}
    if spec is not None:
        fields[b"s"] = orjson.dumps(spec)
    return fields


QUOTES = {
    "raydium": {"dex": "raydium", "amountIn": "1.46", "amountOut": "218.766994", "fee": "0.0025",
                "price": "149.840406849", "priceImpact": "0.000010938403", "ts": 1796156026.8135579,
                "latencyMs": 0},
    "meteora": {"dex": "meteora", "amountIn": "1.46", "amountOut": "218.729295", "fee": "0.002090",
                "price": "149.814585616", "priceImpact": "0", "ts": 1796156026.8137302, "latencyMs": 12},
}  # fmt: skip


def corpus() -> list[list[dict]]:
    """Batches of stream-entry fields, persisted in this order."""
    t = "2026-01-01T12:00:0{}.{:03d}Z".format
    market = [
        _entry(_event(1, 1, "pending", t(0, 0), attempt=None), _spec(1, clientOrderId="c-ü😀")),
        _entry(_event(1, 2, "routing", t(1, 5), dex="raydium", quotes=QUOTES, venueLatencyMs=12)),
        _entry(_event(1, 3, "building", t(2, 10), dex="raydium",
                      transaction={"dex": "raydium", "txHash": "tx1", "instructions": ["wrapSol", "swap:raydium"]})),
        _entry(_event(1, 4, "submitted", t(3, 0), dex="raydium", txHash="tx1")),
        _entry(_event(1, 5, "confirmed", t(4, 999), dex="raydium", txHash="tx1", executedPrice="149.829854795",
                      amountOut="218.751588000", big=12345678901234567, neg=-0.0, exp=1e-7)),
    ]  # fmt: skip
    failed = [
        _entry(_event(2, 1, "pending", "2026-01-01T14:00:00+02:00", attempt=None),
               _spec(2, userId=_ABSENT, amount="1E+2", slippageBps=0, createdAt="2026-01-01T14:00:00+02:00")),
        _entry(_event(2, 2, "routing", "2026-01-01T12:00:01.123456Z", dex="meteora")),
        _entry(_event(2, 3, "routing", "2026-01-01T12:00:02Z", attempt=2, dex="raydium")),
        _entry(_event(2, 4, "failed", "2026-01-01T12:00:03.5+00:00", attempt=3,
                      error="slippage_exceeded", errorMessage='output "below" minimum\\ \n\ttab ’')),
    ]  # fmt: skip
    limit = [
        _entry(_event(3, 1, "pending", t(0, 0), orderType="limit", attempt=None),
               _spec(3, type="limit", amount="0.0000001", limitPrice="150.250", userId=None, owner="key-1",
                     idempotencyKey="idem-1", expiresAt="2030-01-01T00:00:00-05:00", createdAt=None)),
        _entry(_event(3, 2, "waiting", t(1, 0), orderType="limit", attempt=None)),
    ]  # fmt: skip
    sniper = [
        _entry(_event(4, 1, "pending", t(0, 0), orderType="sniper", attempt=None),
               _spec(4, type="sniper", tokenOut="WIF", amount=" 2.50", userId="",
                     trigger={"kind": "liquidity", "minLiquidity": "100000", "nested": [1, 2.50, None, "x"]},
                     clientOrderId="")),
        _entry(_event(4, 2, "waiting", t(1, 0), orderType="sniper", attempt=None)),
        _entry(_event(4, 3, "triggered", t(2, 0), orderType="sniper",
                      trigger={"event": "pool_created", "reserves": ["20000", "1e3"]})),
    ]  # fmt: skip
    typeless = [  # no type, slippage or userId in the spec: from the event and the entry
        _entry(
            _event(5, 1, "pending", t(0, 0), orderType="limit", attempt="2"),
            {"orderId": _oid(5), "tokenIn": "USDC", "tokenOut": "SOL", "amount": 3},
            user="from-entry",
        ),
        _entry(_event(5, 2, "cancelled", t(1, 0), attempt=None, error="", errorMessage="")),
    ]
    orphan = [_entry(_event(6, 2, "routing", t(1, 0), dex="raydium"))]  # seq 1 never arrives
    malformed = [
        {b"o": b"not-a-uuid", b"e": b'{"seq": 1}'},
        {b"o": _oid(7).encode(), b"e": b"{not json"},
        _entry(_event(8, 1, "pending", "2026-01-01T12:00:00"), _spec(8)),  # no time zone
        _entry(_event(9, 1, "pending", t(0, 0), executedPrice="NaN"), _spec(9)),
        _entry(_event(10, 1, "pending", t(0, 0)), {**_spec(10), "amount": "Infinity"}),
        {},  # deleted from the stream while pending
    ]
    rejected = [  # parsed fine, refused by PostgreSQL: dropped one by one by the syncer
        _entry(_event(11, 1, "pending", t(0, 0)), _spec(11, tokenIn="SO\x00L")),
        _entry(_event(12, 1, "pending", t(0, 0)), _spec(12, amount="1E+200000")),
        _entry(_event(13, 1, "pending", t(0, 0)), _spec(13, slippageBps=3_000_000_000)),
        _entry(_event(14, 1, "pending", t(0, 0)), _spec(14)),  # a good one in the same batch
    ]
    t0 = t(0, 0)
    quirks = [
        # a later empty dex/txHash in the same batch as the one it follows: NULL, not the earlier value
        _entry(_event(15, 1, "pending", t0, attempt=None), _spec(15)),
        _entry(_event(15, 2, "routing", t(1, 0), dex="raydium", txHash="t15")),
        _entry(_event(15, 3, "submitted", t(2, 0), dex="", txHash="")),
        # the same across two batches (the second is in `later`): the stored value stays
        _entry(_event(16, 1, "pending", t0, attempt=None), _spec(16)),
        _entry(_event(16, 2, "routing", t(1, 0), dex="raydium", txHash="t16")),
        # a spec on seq 0, then seq 1
        _entry(_event(17, 0, "pending", t0, attempt=None), _spec(17)),
        _entry(_event(17, 1, "routing", t(1, 0), dex="meteora")),
        # ids in other spellings of the same UUID
        _entry(_event(18, 1, "pending", t0), _spec(18), oid=_oid(18).upper()),
        _entry(_event(19, 1, "pending", t0), _spec(19), oid="urn:uuid:" + _oid(19)),
        _entry(_event(19, 2, "routing", t(1, 0)), oid="{" + _oid(19) + "}"),
        _entry(_event(20, 1, "pending", t0, attempt=None), _spec(20)),
        _entry(_event(20, 3, "building", t(3, 0), attempt=2)),
    ]
    later = [
        _entry(_event(16, 3, "submitted", t(2, 0), dex="", txHash="")),
        # an old event redelivered with an attempt no integer column holds: stored, the order not touched
        _entry(_event(20, 2, "routing", t(2, 0), attempt=3_000_000_000)),
        _entry(_event(20, 4, "submitted", t(4, 0), attempt="99999999999999999999999")),  # refused
    ]
    return [
        market[:1] + failed[:2] + market[3:4],  # order 1's seq 4 before 2 and 3
        market[1:3] + market + failed[2:] + limit + sniper[:2],  # redelivered and duplicate entries
        sniper[2:] + typeless + malformed + orphan + market[:2],
        rejected,
        quirks,
        later,
        market + failed + limit + sniper + typeless,  # everything again: nothing changes
    ]


def _rows(engine: sa.Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        conn.execute(sa.text("SET TIME ZONE 'UTC'"))
        orders = conn.execute(sa.text("SELECT row_to_json(o)::text FROM orders o ORDER BY order_id")).scalars()
        events = conn.execute(
            sa.text("SELECT row_to_json(e)::text FROM order_events e ORDER BY order_id, seq")
        ).scalars()
        return {"orders": list(orders), "events": list(events)}


@pytest.fixture
def engine(database_url: str):
    eng = make_engine(database_url)
    with eng.begin() as conn:
        conn.execute(sa.text("TRUNCATE orders CASCADE"))
    yield eng
    with eng.begin() as conn:
        conn.execute(sa.text("TRUNCATE orders CASCADE"))
    eng.dispose()


def test_rows_match_the_golden_snapshot(engine: sa.Engine, redis_url: str) -> None:
    client = sync_redis.Redis.from_url(redis_url)  # holds none of these orders: the orphan stays one
    syncer = StreamSyncer(engine, client)
    for batch in corpus():
        entries = [(f"{i}-0".encode(), fields) for i, fields in enumerate(batch)]
        syncer._persist_isolating(entries, allow_orphans=True)
    client.close()
    rows = _rows(engine)
    if os.environ.get("DBSYNC_WRITE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
    golden = orjson.loads(GOLDEN.read_bytes())
    assert len(rows["orders"]) == 12 and len(rows["events"]) == 31
    assert rows["orders"] == golden["orders"]
    assert rows["events"] == golden["events"]
