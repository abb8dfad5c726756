"""The read side of the order history, for the API (SQLAlchemy asyncio + psycopg 3).

`list_orders` pages newest first with an opaque keyset cursor over (created_at, order_id), so a page costs
the same however deep it is and concurrent inserts never shift it; `get_order` returns one order with
its events, for orders that Redis no longer holds.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.domain.events import iso_utc
from shared.domain.untrusted import clip, parse_uuid
from shared.persistence.models import events_table, orders_table
from shared.persistence.timeouts import (
    CONNECT_TIMEOUT_S,
    client_deadline,
    client_deadline_options,
    statement_timeout,
)

MAX_LIMIT = 500
#: encode_cursor's output is about 100 characters; anything much longer was not made by it.
MAX_CURSOR_CHARS = 256
_O = orders_table.c

_COLUMNS = (
    ("orderId", _O.order_id),
    ("status", _O.status),
    ("type", _O.type),
    ("tokenIn", _O.token_in),
    ("tokenOut", _O.token_out),
    ("amount", _O.amount),
    ("slippageBps", _O.slippage_bps),
    ("userId", _O.user_id),
    ("clientOrderId", _O.client_order_id),
    ("limitPrice", _O.limit_price),
    ("trigger", _O.trigger),
    # A conditional order's terms, from its accepted request (no column of their own: nothing filters on them).
    ("stopPrice", _O.spec["stopPrice"].astext.label("stop_price")),
    ("takeProfitPrice", _O.spec["takeProfitPrice"].astext.label("take_profit_price")),
    ("trailBps", _O.spec["trailBps"].as_integer().label("trail_bps")),
    ("activationPrice", _O.spec["activationPrice"].astext.label("activation_price")),
    ("expiresAt", _O.expires_at),
    ("createdAt", _O.created_at),
    ("updatedAt", _O.updated_at),
    ("attempt", _O.attempt),
    ("dex", _O.dex),
    ("txHash", _O.tx_hash),
    ("executedPrice", _O.executed_price),
    ("amountOut", _O.amount_out),
    ("error", _O.error),
    ("errorMessage", _O.error_message),
)


def make_async_engine(url: str, *, statement_timeout_ms: int = 0, **kwargs: Any) -> AsyncEngine:
    """An async engine for the API: psycopg 3 driver, pre-ping, orjson for JSONB, every statement limited to
    `statement_timeout_ms` (0 = none), and this module's reads to that plus a margin (`client_deadline`)."""
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    options: dict[str, Any] = {
        "pool_pre_ping": True,
        "json_serializer": lambda value: orjson.dumps(value).decode(),
        "json_deserializer": orjson.loads,
    }
    options.update(kwargs)
    options["connect_args"] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        **options.get("connect_args", {}),
        **statement_timeout(statement_timeout_ms),
    }
    options["execution_options"] = {
        **options.get("execution_options", {}),
        **client_deadline_options(statement_timeout_ms),
    }
    return create_async_engine(url, **options)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")  # never "1E-7"
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, UUID):
        return str(value)
    return value


def _order_dict(row: sa.Row[Any]) -> dict[str, Any]:
    return {name: _json_value(row._mapping[column]) for name, column in _COLUMNS}


def _owned_by(owner: str | None) -> list[sa.ColumnElement[bool]]:
    return [] if owner is None else [_O.owner == owner]


def encode_cursor(created_at: datetime, order_id: UUID) -> str:
    raw = orjson.dumps([created_at.isoformat(), str(order_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """Inverse of `encode_cursor`; ValueError for anything it did not produce."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
            raise ValueError("not a cursor this API produced")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, order_id = orjson.loads(raw)
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("cursor timestamp without a time zone")
        # In UTC, as encode_cursor wrote it: an edited offset may push the time off the calendar (OverflowError).
        return moment.astimezone(UTC), parse_uuid(order_id)
    except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise ValueError(f"invalid cursor: {clip(cursor)!r}") from exc


def _match(column: sa.ColumnElement[Any], value: str | Sequence[str] | None) -> sa.ColumnElement[bool] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return column == value
    return column.in_(list(value))


async def list_orders(
    engine: AsyncEngine,
    *,
    limit: int = 50,
    cursor: str | None = None,
    status: str | Sequence[str] | None = None,
    type: str | Sequence[str] | None = None,
    user_id: str | None = None,
    token_in: str | None = None,
    token_out: str | None = None,
    owner: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; `(orders, next_cursor)`, next_cursor None on the last page. `owner` restricts the
    page to one API key's orders.

    `limit` is capped at 500; a limit below 1 or a cursor this module did not produce raises ValueError.
    `status`/`type` accept one value or several."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    limit = min(int(limit), MAX_LIMIT)
    conditions = [
        c
        for c in (
            _match(_O.status, status),
            _match(_O.type, type),
            _match(_O.user_id, user_id),
            _match(_O.token_in, token_in),
            _match(_O.token_out, token_out),
            _match(_O.owner, owner),
        )
        if c is not None
    ]
    if cursor:
        created_at, order_id = decode_cursor(cursor)
        conditions.append(sa.tuple_(_O.created_at, _O.order_id) < sa.tuple_(created_at, order_id))
    query = (
        sa.select(*(column for _, column in _COLUMNS))
        .where(*conditions)
        .order_by(_O.created_at.desc(), _O.order_id.desc())
        .limit(limit + 1)
    )
    async with client_deadline(engine), engine.connect() as conn:  # a server that never answers: 503
        rows = (await conn.execute(query)).all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor(last.created_at, last.order_id)
    return [_order_dict(row) for row in page], next_cursor


async def get_order(engine: AsyncEngine, order_id: UUID | str, *, owner: str | None = None) -> dict[str, Any] | None:
    """The order with `events` (the WebSocket messages, in seq order), or None if unknown (or, with
    `owner`, placed by another API key).

    A malformed id raises ValueError."""
    oid = order_id if isinstance(order_id, UUID) else UUID(str(order_id))
    query = sa.select(*(c for _, c in _COLUMNS)).where(_O.order_id == oid, *_owned_by(owner))
    async with client_deadline(engine), engine.connect() as conn:  # a server that never answers: 503
        row = (await conn.execute(query)).first()
        if row is None:
            return None
        payloads = (
            (
                await conn.execute(
                    sa.select(events_table.c.payload).where(events_table.c.order_id == oid).order_by(events_table.c.seq)
                )
            )
            .scalars()
            .all()
        )
    order = _order_dict(row)
    order["events"] = list(payloads)
    return order
