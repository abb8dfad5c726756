"""Writing one batch of `stream:events` entries to PostgreSQL, in one transaction, idempotently.

An entry is `(entry_id, fields)` as XREADGROUP returns it (bytes or str keys): `o` order id, `u` user id,
`e` the event JSON and, on the seq-1 event only, `s` the accepted order spec. Re-persisting any entry,
in any order, changes nothing: orders and events are inserted with ON CONFLICT DO NOTHING, and an order's
status/result columns only move forward (to an event whose seq is above `orders.last_seq`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from loguru import logger
from sqlalchemy.engine import Connection, Engine

from shared.persistence.models import events_table, orders_table

#: Column -> PostgreSQL type of the rows db-sync inserts. A batch's rows travel as ONE JSON document (an
#: orjson-encoded array of objects keyed by column) that `jsonb_to_recordset` turns back into typed rows:
#: one text parameter whatever the batch size, so psycopg has nothing to escape per cell (quoting every JSON
#: payload into a `text[]` literal was two thirds of db-sync's CPU) and the statement text never changes,
#: so psycopg prepares it once.
_ORDER_COLUMNS = {
    "order_id": "uuid",
    "type": "text",
    "status": "text",
    "token_in": "text",
    "token_out": "text",
    "amount": "numeric",
    "slippage_bps": "integer",
    "user_id": "text",
    "owner": "text",
    "client_order_id": "text",
    "idempotency_key": "text",
    "limit_price": "numeric",
    "trigger": "jsonb",
    "expires_at": "timestamptz",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
    "last_seq": "integer",
    "spec": "jsonb",
}
_EVENT_COLUMNS = {"order_id": "uuid", "seq": "integer", "status": "text", "ts": "timestamptz", "payload": "jsonb"}
#: The newest state of each order that has new events: folded by `_apply`, written by `_APPLY_EVENTS`.
_STATE_COLUMNS = {
    "order_id": "uuid",
    "seq": "integer",
    "status": "text",
    "ts": "timestamptz",
    "attempt": "integer",
    "dex": "text",
    "tx_hash": "text",
    "executed_price": "numeric",
    "amount_out": "numeric",
    "error": "text",
    "error_message": "text",
}


def _recordset(columns: dict[str, str]) -> str:
    """`FROM` item of the `:rows` document's objects as rows of `columns`."""
    return f"jsonb_to_recordset(CAST(:rows AS jsonb)) AS v({', '.join(f'{n} {t}' for n, t in columns.items())})"


def _json_insert(table: sa.Table, columns: dict[str, str], conflict: tuple[str, ...]) -> sa.TextClause:
    names = ", ".join(columns)
    return sa.text(
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {_recordset(columns)} "
        f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    )


_INSERT_ORDERS = _json_insert(orders_table, _ORDER_COLUMNS, ("order_id",))
_INSERT_EVENTS = _json_insert(events_table, _EVENT_COLUMNS, ("order_id", "seq"))

#: The batch's orders, locked in a fixed order (so two replicas never deadlock), with their newest seq.
_LOCK_ORDERS = sa.text(
    "SELECT order_id, last_seq FROM orders WHERE order_id = ANY(CAST(:ids AS uuid[])) ORDER BY order_id FOR UPDATE"
)

_APPLY_EVENTS = sa.text(
    f"""
    UPDATE orders AS o SET status = v.status, last_seq = v.seq, updated_at = v.ts,
        attempt = COALESCE(v.attempt, o.attempt), dex = COALESCE(v.dex, o.dex),
        tx_hash = COALESCE(v.tx_hash, o.tx_hash),
        executed_price = COALESCE(v.executed_price, o.executed_price),
        amount_out = COALESCE(v.amount_out, o.amount_out),
        error = v.error, error_message = v.error_message
    FROM {_recordset(_STATE_COLUMNS)}
    WHERE o.order_id = v.order_id AND v.seq > o.last_seq
    """
)


class OrphanEventsError(RuntimeError):
    """Events whose order row exists neither in PostgreSQL nor in the batch (its seq-1 entry is elsewhere)."""

    def __init__(self, order_ids: set[UUID]) -> None:
        super().__init__(f"{len(order_ids)} order(s) not persisted yet: {sorted(map(str, order_ids))[:5]}")
        self.order_ids = order_ids


@dataclass(slots=True)
class _Event:
    order_id: UUID
    seq: int
    status: str
    ts: str  # the timestamp as psycopg used to send a datetime (str of it): PostgreSQL reads the same instant
    payload: dict[str, Any]


def make_engine(url: str, **kwargs: Any) -> Engine:
    """A sync engine for db-sync: psycopg 3, pre-ping (PostgreSQL may go away), orjson for JSONB."""
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    options: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": 2,
        "max_overflow": 2,
        "connect_args": {"connect_timeout": 5},
        "json_serializer": lambda value: orjson.dumps(value).decode(),
        "json_deserializer": orjson.loads,
    }
    options.update(kwargs)
    return sa.create_engine(url, **options)


def _get(fields: Mapping[Any, Any], name: str) -> Any:
    value = fields.get(name)
    if value is None:
        value = fields.get(name.encode())
    return value.decode() if isinstance(value, bytes | bytearray) else value


def _ts(value: Any) -> str | None:
    """A timestamp with a time zone, as the text PostgreSQL gets; ValueError without one."""
    if value in (None, ""):
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return str(moment)


def _dec(value: Any) -> str | None:
    """A finite decimal, as the text PostgreSQL gets (exact, scale kept); Decimal's errors otherwise."""
    if value in (None, ""):
        return None
    number = Decimal(str(value))
    if not number.is_finite():
        raise InvalidOperation(f"not a finite decimal: {value!r}")
    return str(number)


_INT4 = range(-(2**31), 2**31)


def _int(value: Any) -> int | str:
    """An integer for an `integer` column. One PostgreSQL would refuse travels as text, so that PostgreSQL
    (not orjson, which refuses integers over 64 bits) rejects it and the syncer drops that entry alone."""
    number = int(value)
    return number if number in _INT4 else str(number)


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _parse(fields: Mapping[Any, Any]) -> tuple[_Event, dict[str, Any] | None]:
    payload = orjson.loads(fields.get(b"e") or fields.get("e"))  # orjson reads bytes as they are
    order_id = UUID(str(_get(fields, "o") or payload["orderId"]))
    for key in ("executedPrice", "amountOut"):
        _dec(payload.get(key))  # reject now what PostgreSQL would reject later
    if payload.get("attempt") is not None:
        int(payload["attempt"])
    ts = _ts(payload["timestamp"])
    if ts is None:
        raise ValueError("event without a timestamp")
    event = _Event(order_id, int(payload["seq"]), str(payload["status"]), ts, payload)
    raw_spec = _get(fields, "s")
    if not raw_spec:
        return event, None
    spec = orjson.loads(raw_spec)
    created_at = _ts(spec.get("createdAt")) or event.ts
    order = {
        "order_id": order_id,
        "type": str(spec.get("type") or payload.get("orderType") or "market"),
        "status": event.status,
        "token_in": str(spec["tokenIn"]),
        "token_out": str(spec["tokenOut"]),
        "amount": _dec(spec["amount"]),
        "slippage_bps": _int(spec.get("slippageBps", 50)),
        "user_id": _opt_str(spec["userId"] if "userId" in spec else _get(fields, "u")),
        "owner": _opt_str(spec.get("owner")),
        "client_order_id": _opt_str(spec.get("clientOrderId")),
        "idempotency_key": _opt_str(spec.get("idempotencyKey")),
        "limit_price": _dec(spec.get("limitPrice")),
        "trigger": spec.get("trigger"),
        "expires_at": _ts(spec.get("expiresAt")),
        "created_at": created_at,
        "updated_at": created_at,
        "last_seq": 0,
        "spec": spec,
    }
    return event, order


def parse_entries(entries: Iterable[Any]) -> tuple[list[dict[str, Any]], list[_Event]]:
    """Orders (from specs) and events of a batch, de-duplicated; malformed entries are logged and dropped."""
    orders: dict[UUID, dict[str, Any]] = {}
    events: dict[tuple[UUID, int], _Event] = {}
    for entry in entries:
        entry_id, fields = entry if isinstance(entry, tuple | list) else (None, entry)
        if not fields:  # an entry deleted from the stream while pending: nothing left to persist
            continue
        try:
            event, order = _parse(fields)
        except (KeyError, TypeError, ValueError, ArithmeticError, orjson.JSONDecodeError) as exc:
            logger.error("db-sync: dropping malformed stream entry {}: {!r}", entry_id, exc)
            continue
        events.setdefault((event.order_id, event.seq), event)
        if order is not None:
            orders.setdefault(event.order_id, order)
    return [orders[k] for k in sorted(orders)], [events[k] for k in sorted(events)]


def _rows(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The `:rows` parameter: every row in one JSON document (UUIDs as text; the rest is JSON already)."""
    return {"rows": orjson.dumps(rows).decode()}


def persist_batch(engine: Engine, entries: Iterable[Any], *, allow_orphans: bool = False) -> None:
    """Persist `entries` in ONE transaction. Idempotent; never moves an order's status backwards.

    Events whose order has no row (its seq-1 entry not persisted yet) raise `OrphanEventsError` and
    roll everything back, unless `allow_orphans`, which drops them with a warning instead.
    """
    orders, events = parse_entries(entries)
    if not events and not orders:
        return
    with engine.begin() as conn:
        if orders:
            conn.execute(_INSERT_ORDERS, _rows(orders))
        ids = sorted({e.order_id for e in events})
        rows = conn.execute(_LOCK_ORDERS, {"ids": "{" + ",".join(map(str, ids)) + "}"}).all()
        last_seq = {row.order_id: row.last_seq for row in rows}
        missing = set(ids) - last_seq.keys()
        if missing:
            if not allow_orphans:
                raise OrphanEventsError(missing)
            logger.warning("db-sync: dropping events of {} unknown order(s): {}", len(missing), sorted(missing))
            events = [e for e in events if e.order_id not in missing]
        if not events:
            return
        event_rows = [
            {"order_id": e.order_id, "seq": _int(e.seq), "status": e.status, "ts": e.ts, "payload": e.payload}
            for e in events
        ]
        conn.execute(_INSERT_EVENTS, _rows(event_rows))
        _apply(conn, [e for e in events if e.seq > last_seq[e.order_id]])


def _apply(conn: Connection, fresh: list[_Event]) -> None:
    """Fold each order's new events (sorted by order, seq) into its row: latest status, last known results."""
    folded: dict[UUID, dict[str, Any]] = {}
    for e in fresh:
        state = folded.setdefault(e.order_id, {"order_id": e.order_id})
        p = e.payload
        state.update(seq=e.seq, status=e.status, ts=e.ts, error=p.get("error"), error_message=p.get("errorMessage"))
        for key, field in (
            ("attempt", "attempt"),
            ("dex", "dex"),
            ("tx_hash", "txHash"),
            ("executed_price", "executedPrice"),
            ("amount_out", "amountOut"),
        ):
            if p.get(field) is not None:
                state[key] = p[field]
    if not folded:
        return
    states = [
        {
            "order_id": s["order_id"],
            "seq": _int(s["seq"]),
            "status": s["status"],
            "ts": s["ts"],
            "attempt": None if s.get("attempt") is None else _int(s["attempt"]),
            "dex": _opt_str(s.get("dex")),
            "tx_hash": _opt_str(s.get("tx_hash")),
            "executed_price": _dec(s.get("executed_price")),
            "amount_out": _dec(s.get("amount_out")),
            "error": _opt_str(s.get("error")),
            "error_message": _opt_str(s.get("error_message")),
        }
        for s in folded.values()
    ]
    conn.execute(_APPLY_EVENTS, _rows(states))
