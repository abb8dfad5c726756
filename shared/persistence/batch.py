"""Writing one batch of `stream:events` entries to PostgreSQL, in one transaction, idempotently.

An entry is `(entry_id, fields)` as XREADGROUP returns it (bytes or str keys): `o` order id, `u` user id,
`e` the event JSON and, on the seq-1 event only, `s` the accepted order spec. Re-persisting any entry,
in any order, changes nothing: orders and events are inserted with ON CONFLICT DO NOTHING, and an order's
status/result columns only move forward (to an event whose seq is above `orders.last_seq`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
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
from shared.persistence.timeouts import statement_timeout

#: What an order's events decide about it (last attempt, venue, transaction, outcome): a new order carries them
#: in its insert, a stored one gets them from `_APPLY_EVENTS`.
_EVENT_STATE_COLUMNS = {
    "attempt": "integer",
    "dex": "text",
    "tx_hash": "text",
    "executed_price": "numeric",
    "amount_out": "numeric",
    "error": "text",
    "error_message": "text",
}
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
    # the state of its events in the same batch (see persist_batch); absent keys are NULL
    **_EVENT_STATE_COLUMNS,
}
_EVENT_COLUMNS = {"order_id": "uuid", "seq": "integer", "status": "text", "ts": "timestamptz", "payload": "jsonb"}
#: The newest state of a stored order that has new events: folded by `_fold`, written by `_APPLY_EVENTS`.
_STATE_COLUMNS = {"order_id": "uuid", "seq": "integer", "status": "text", "ts": "timestamptz", **_EVENT_STATE_COLUMNS}


def _recordset(columns: dict[str, str]) -> str:
    """`FROM` item of the `:rows` document's objects as rows of `columns`."""
    return f"jsonb_to_recordset(CAST(:rows AS jsonb)) AS v({', '.join(f'{n} {t}' for n, t in columns.items())})"


def _json_insert(
    table: sa.Table, columns: dict[str, str], conflict: tuple[str, ...], returning: str = ""
) -> sa.TextClause:
    names = ", ".join(columns)
    return sa.text(
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {_recordset(columns)} "
        f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING {returning}"
    )


#: RETURNING: the orders this statement created (not those already stored), as canonical text.
_INSERT_ORDERS = _json_insert(orders_table, _ORDER_COLUMNS, ("order_id",), "RETURNING CAST(order_id AS text)")
_INSERT_EVENTS = _json_insert(events_table, _EVENT_COLUMNS, ("order_id", "seq"))

#: The batch's orders, locked in a fixed order (so two replicas never deadlock), with their newest seq.
_LOCK_ORDERS = sa.text(
    "SELECT CAST(order_id AS text), last_seq FROM orders WHERE order_id = ANY(CAST(:ids AS uuid[])) "
    "ORDER BY order_id FOR UPDATE"
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

    def __init__(self, order_ids: set[str]) -> None:
        super().__init__(f"{len(order_ids)} order(s) not persisted yet: {sorted(order_ids)[:5]}")
        self.order_ids = order_ids


@dataclass(slots=True)
class _Event:
    order_id: str  # canonical (lower-case, hyphenated): sorts and compares as PostgreSQL's uuid does
    seq: int
    status: str
    ts: str  # a text PostgreSQL reads as the instant `datetime.fromisoformat` read
    payload: dict[str, Any]


def make_engine(url: str, *, statement_timeout_ms: int = 0, **kwargs: Any) -> Engine:
    """A sync engine for db-sync: psycopg 3, orjson for JSONB, pre-ping (PostgreSQL may go away) unless turned
    off (`pool_pre_ping=False`, as db-sync itself does: `StreamSyncer` retries on a new connection instead).
    A statement over `statement_timeout_ms` (0 = none) fails, and the syncer retries its batch."""
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
    options["connect_args"] = {**options["connect_args"], **statement_timeout(statement_timeout_ms)}
    return sa.create_engine(url, **options)


def _get(fields: Mapping[Any, Any], name: bytes) -> Any:
    value = fields.get(name)  # XREADGROUP gives bytes keys; tests and rebuilt entries may use str
    if value is None:
        value = fields.get(name.decode())
    return value.decode() if isinstance(value, bytes | bytearray) else value


#: The forms the engine writes (RFC 3339 with `Z` or an offset, at most microseconds). PostgreSQL reads
#: them exactly as `datetime.fromisoformat` does, so once that accepted one the text itself is sent: str()
#: of a datetime (what psycopg sent before) costs ten times the parse. Other forms go as str(datetime).
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)", re.ASCII).fullmatch
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII).fullmatch


def _ts(value: Any) -> str | None:
    """A timestamp with a time zone, as the text PostgreSQL gets; ValueError without one."""
    if value in (None, ""):
        return None
    if isinstance(value, str) and _RFC3339(value):
        datetime.fromisoformat(value)  # ranges (month 13, second 60, ...): ValueError
        return value
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return str(moment)


def _uuid(value: Any) -> str:
    """An order id in canonical form (the engine's own ids already are); ValueError if it is none."""
    text = str(value)
    return text if _CANONICAL_UUID(text) else str(UUID(text))


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
    raw_event = fields.get(b"e") or fields.get("e")
    if raw_event is None:
        raise TypeError("no event payload (field e)")  # dropped as malformed, as orjson.loads(None) would have been
    payload = orjson.loads(raw_event)  # orjson reads bytes as they are
    order_id = _uuid(_get(fields, b"o") or payload["orderId"])
    for key in ("executedPrice", "amountOut"):
        _dec(payload.get(key))  # reject now what PostgreSQL would reject later
    if payload.get("attempt") is not None:
        int(payload["attempt"])
    ts = _ts(payload["timestamp"])
    if ts is None:
        raise ValueError("event without a timestamp")
    event = _Event(order_id, int(payload["seq"]), str(payload["status"]), ts, payload)
    raw_spec = fields.get(b"s") or fields.get("s")
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
        "user_id": _opt_str(spec["userId"] if "userId" in spec else _get(fields, b"u")),
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
    """Orders (from specs) and events of a batch, de-duplicated and sorted by order id (then seq); malformed
    entries are logged and dropped."""
    orders: dict[str, dict[str, Any]] = {}
    events: dict[tuple[str, int], _Event] = {}
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
    """The `:rows` parameter: every row in one JSON document."""
    return {"rows": orjson.dumps(rows).decode()}


#: Event fields whose last non-null value an order keeps (COALESCE in `_APPLY_EVENTS`) -> their columns.
_RESULTS = (
    ("attempt", "attempt"),
    ("dex", "dex"),
    ("txHash", "tx_hash"),
    ("executedPrice", "executed_price"),
    ("amountOut", "amount_out"),
)


def _fold(order_id: str, events: list[_Event]) -> dict[str, Any]:
    """One order's new events (by seq) folded into the `_STATE_COLUMNS` row `_APPLY_EVENTS` writes: status,
    seq, time and error of the newest, and each result field's newest non-null value (None: keep the row's)."""
    state: dict[str, Any] = {}
    for e in events:
        p = e.payload
        state.update(seq=e.seq, status=e.status, ts=e.ts, error=p.get("error"), error_message=p.get("errorMessage"))
        for field, column in _RESULTS:
            if p.get(field) is not None:
                state[column] = p[field]
    attempt = state.get("attempt")
    return {
        "order_id": order_id,
        "seq": _int(state["seq"]),
        "status": state["status"],
        "ts": state["ts"],
        "attempt": None if attempt is None else _int(attempt),
        "dex": _opt_str(state.get("dex")),
        "tx_hash": _opt_str(state.get("tx_hash")),
        "executed_price": _dec(state.get("executed_price")),
        "amount_out": _dec(state.get("amount_out")),
        "error": _opt_str(state.get("error")),
        "error_message": _opt_str(state.get("error_message")),
    }


def _with_state(order: dict[str, Any], state: dict[str, Any]) -> None:
    """Fold `state` into a new order's row as `_APPLY_EVENTS` would into the stored one (its result columns
    are all NULL, so COALESCE keeps a None)."""
    order.update(
        status=state["status"],
        last_seq=state["seq"],
        updated_at=state["ts"],
        error=state["error"],
        error_message=state["error_message"],
    )
    for _field, column in _RESULTS:
        if state[column] is not None:
            order[column] = state[column]


def _order_id(order: dict[str, Any]) -> str:
    order_id: str = order["order_id"]  # _uuid's canonical text
    return order_id


def _event_key(event: _Event) -> tuple[str, int]:
    return event.order_id, event.seq


def _lock(conn: Connection, order_ids: list[str]) -> dict[str, int]:
    """Lock the stored ones of `order_ids` (sorted) and read their newest seq."""
    if not order_ids:
        return {}
    return dict(conn.execute(_LOCK_ORDERS, {"ids": "{" + ",".join(order_ids) + "}"}).all())


def persist_batch(
    engine: Engine,
    entries: Iterable[Any],
    *,
    allow_orphans: bool = False,
    rebuild: Callable[[set[str]], list[Any]] | None = None,
) -> None:
    """Persist `entries` in ONE transaction. Idempotent; never moves an order's status backwards.

    Events whose order has no row (its seq-1 entry not persisted yet, e.g. pending with another replica)
    are first given to `rebuild`, which returns such first entries (from Redis) to persist along; those it
    cannot rebuild raise `OrphanEventsError` and roll everything back, unless `allow_orphans`, which drops
    them with a warning instead.

    An order first seen in this batch is inserted with its events already folded in, so it needs no UPDATE
    (an UPDATE of `orders` changes the indexed status: a new version in every index). Only orders that were
    already stored are locked, read and updated.
    """
    orders, events = parse_entries(entries)
    if not events and not orders:
        return
    with engine.begin() as conn:
        # Orders with events here but no spec must be stored already: lock them before inserting anything, so
        # that missing ones can still be rebuilt into this transaction instead of failing it.
        specs = {order["order_id"] for order in orders}
        continuing = sorted({e.order_id for e in events} - specs)
        last_seq = _lock(conn, continuing)
        missing = set(continuing) - last_seq.keys()
        if missing and rebuild is not None:
            orders, events, missing = _with_rebuilt(orders, events, missing, rebuild)
        if missing:
            events = _without_orphans(events, missing, allow_orphans)
        by_order: dict[str, list[_Event]] = {}
        for e in events:
            by_order.setdefault(e.order_id, []).append(e)
        if orders:
            last_seq.update(_insert_orders(conn, orders, by_order))
        if events:
            _insert_events(conn, events)
            _apply_to_stored(conn, last_seq, by_order)


def _with_rebuilt(
    orders: list[dict[str, Any]],
    events: list[_Event],
    missing: set[str],
    rebuild: Callable[[set[str]], list[Any]],
) -> tuple[list[dict[str, Any]], list[_Event], set[str]]:
    """The batch with the first entries `rebuild` found for `missing` orders added; and those still missing."""
    extra_orders, extra_events = parse_entries(rebuild(missing))
    rebuilt = {order["order_id"] for order in extra_orders} & missing
    if not rebuilt:
        return orders, events, missing
    orders = sorted([*orders, *(o for o in extra_orders if o["order_id"] in rebuilt)], key=_order_id)
    known = {(e.order_id, e.seq) for e in events}
    extra = [e for e in extra_events if e.order_id in rebuilt and (e.order_id, e.seq) not in known]
    return orders, sorted([*events, *extra], key=_event_key), missing - rebuilt


def _without_orphans(events: list[_Event], missing: set[str], allow_orphans: bool) -> list[_Event]:
    if not allow_orphans:
        raise OrphanEventsError(missing)
    logger.warning("db-sync: dropping events of {} unknown order(s): {}", len(missing), sorted(missing))
    return [e for e in events if e.order_id not in missing]


def _insert_orders(conn: Connection, orders: list[dict[str, Any]], by_order: dict[str, list[_Event]]) -> dict[str, int]:
    """Insert the batch's new orders with their events already folded in; lock and return the newest seq of
    those that were stored already (a redelivery, or another replica got there first), to update like the rest."""
    for order in orders:  # a new row has last_seq 0: every event above that is new
        fresh = [e for e in by_order[order["order_id"]] if e.seq > 0]
        if fresh:
            _with_state(order, _fold(order["order_id"], fresh))
    created = set(conn.execute(_INSERT_ORDERS, _rows(orders)).scalars())
    return _lock(conn, [order["order_id"] for order in orders if order["order_id"] not in created])


def _insert_events(conn: Connection, events: list[_Event]) -> None:
    event_rows = [
        {"order_id": e.order_id, "seq": _int(e.seq), "status": e.status, "ts": e.ts, "payload": e.payload}
        for e in events
    ]
    conn.execute(_INSERT_EVENTS, _rows(event_rows))


def _apply_to_stored(conn: Connection, last_seq: dict[str, int], by_order: dict[str, list[_Event]]) -> None:
    """Fold each stored order's events newer than its stored seq into its row (never backwards)."""
    states = []
    for order_id, seq in sorted(last_seq.items()):
        if fresh := [e for e in by_order.get(order_id, ()) if e.seq > seq]:
            states.append(_fold(order_id, fresh))
    if states:
        conn.execute(_APPLY_EVENTS, _rows(states))
