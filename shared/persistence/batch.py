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

#: Column -> PostgreSQL type of the rows db-sync inserts. Each column travels as ONE array parameter of an
#: `INSERT ... SELECT FROM unnest(...)`: the statement text never changes with the batch size, so neither
#: SQLAlchemy nor psycopg compiles a fresh multi-row VALUES list (with a bind per cell) for every batch.
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


def _unnest_insert(table: sa.Table, columns: dict[str, str], conflict: tuple[str, ...]) -> sa.TextClause:
    names = ", ".join(columns)
    arrays = ", ".join(f"CAST(:{name} AS {pg_type}[])" for name, pg_type in columns.items())
    return sa.text(
        f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    )


_INSERT_ORDERS = _unnest_insert(orders_table, _ORDER_COLUMNS, ("order_id",))
_INSERT_EVENTS = _unnest_insert(events_table, _EVENT_COLUMNS, ("order_id", "seq"))

_APPLY_EVENTS = sa.text(
    """
    UPDATE orders AS o SET status = v.status, last_seq = v.seq, updated_at = v.ts,
        attempt = COALESCE(v.attempt, o.attempt), dex = COALESCE(v.dex, o.dex),
        tx_hash = COALESCE(v.tx_hash, o.tx_hash),
        executed_price = COALESCE(v.executed_price, o.executed_price),
        amount_out = COALESCE(v.amount_out, o.amount_out),
        error = v.error, error_message = v.error_message
    FROM unnest(CAST(:ids AS uuid[]), CAST(:seqs AS integer[]), CAST(:statuses AS text[]),
                CAST(:ts AS timestamptz[]), CAST(:attempts AS integer[]), CAST(:dexes AS text[]),
                CAST(:tx_hashes AS text[]), CAST(:prices AS numeric[]), CAST(:amounts_out AS numeric[]),
                CAST(:errors AS text[]), CAST(:messages AS text[]))
        AS v(order_id, seq, status, ts, attempt, dex, tx_hash, executed_price, amount_out,
             error, error_message)
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
    ts: datetime
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


def _ts(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return moment


def _dec(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    number = Decimal(str(value))
    if not number.is_finite():
        raise InvalidOperation(f"not a finite decimal: {value!r}")
    return number


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _parse(fields: Mapping[Any, Any]) -> tuple[_Event, dict[str, Any] | None]:
    payload = orjson.loads(_get(fields, "e"))
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
        "slippage_bps": int(spec.get("slippageBps", 50)),
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


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _insert_many(
    conn: Connection, statement: sa.TextClause, columns: dict[str, str], rows: list[dict[str, Any]]
) -> None:
    """Insert `rows` column-wise (see `_unnest_insert`); JSONB travels as text, cast by PostgreSQL."""
    params = {}
    for name, pg_type in columns.items():
        values = [row.get(name) for row in rows]
        params[name] = [_json_text(v) for v in values] if pg_type == "jsonb" else values
    conn.execute(statement, params)


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
            _insert_many(conn, _INSERT_ORDERS, _ORDER_COLUMNS, orders)
        ids = sorted({e.order_id for e in events})
        rows = conn.execute(
            sa.select(orders_table.c.order_id, orders_table.c.last_seq)
            .where(orders_table.c.order_id.in_(ids))
            .order_by(orders_table.c.order_id)
            .with_for_update()
        ).all()
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
            {"order_id": e.order_id, "seq": e.seq, "status": e.status, "ts": e.ts, "payload": e.payload} for e in events
        ]
        _insert_many(conn, _INSERT_EVENTS, _EVENT_COLUMNS, event_rows)
        _apply(conn, [e for e in events if e.seq > last_seq[e.order_id]])


def _apply(conn: Connection, fresh: list[_Event]) -> None:
    """Fold each order's new events (sorted by order, seq) into its row: latest status, last known results."""
    folded: dict[UUID, dict[str, Any]] = {}
    for e in fresh:
        state = folded.setdefault(e.order_id, {})
        p = e.payload
        state.update(seq=e.seq, status=e.status, ts=e.ts, error=p.get("error"), message=p.get("errorMessage"))
        for key, field in (
            ("attempt", "attempt"),
            ("dex", "dex"),
            ("tx", "txHash"),
            ("price", "executedPrice"),
            ("out", "amountOut"),
        ):
            if p.get(field) is not None:
                state[key] = p[field]
    if not folded:
        return
    states = list(folded.values())
    conn.execute(
        _APPLY_EVENTS,
        {
            "ids": list(folded),
            "seqs": [s["seq"] for s in states],
            "statuses": [s["status"] for s in states],
            "ts": [s["ts"] for s in states],
            "attempts": [None if s.get("attempt") is None else int(s["attempt"]) for s in states],
            "dexes": [_opt_str(s.get("dex")) for s in states],
            "tx_hashes": [_opt_str(s.get("tx")) for s in states],
            "prices": [_dec(s.get("price")) for s in states],
            "amounts_out": [_dec(s.get("out")) for s in states],
            "errors": [_opt_str(s.get("error")) for s in states],
            "messages": [_opt_str(s.get("message")) for s in states],
        },
    )
