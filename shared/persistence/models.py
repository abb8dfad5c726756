"""PostgreSQL tables of the order history, written only by db-sync and read by the API's history endpoints.

`orders` holds one row per order (its accepted spec plus the state of its newest persisted event);
`order_events` holds every lifecycle event exactly once, keyed by (order_id, seq).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlmodel import Field, SQLModel

#: Unconstrained NUMERIC: exact, keeps the scale it was given ("1.5" reads back as "1.5"), never overflows.
MONEY = sa.Numeric(asdecimal=True)


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        sa.Index("ix_orders_created_at_order_id", sa.text("created_at DESC"), sa.text("order_id DESC")),
        sa.Index("ix_orders_user_id_created_at", "user_id", sa.text("created_at DESC"), sa.text("order_id DESC")),
        sa.Index("ix_orders_owner_created_at", "owner", sa.text("created_at DESC"), sa.text("order_id DESC")),
        sa.Index("ix_orders_status_created_at", "status", sa.text("created_at DESC"), sa.text("order_id DESC")),
    )

    order_id: UUID = Field(sa_column=sa.Column(PG_UUID(as_uuid=True), primary_key=True))
    type: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    status: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    token_in: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    token_out: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    amount: Decimal = Field(sa_column=sa.Column(MONEY, nullable=False))
    slippage_bps: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    user_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    client_order_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    idempotency_key: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    limit_price: Decimal | None = Field(default=None, sa_column=sa.Column(MONEY))
    trigger: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONB))
    expires_at: datetime | None = Field(default=None, sa_column=sa.Column(_tz()))
    created_at: datetime = Field(sa_column=sa.Column(_tz(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(_tz(), nullable=False))
    last_seq: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    attempt: int | None = Field(default=None, sa_column=sa.Column(sa.Integer))
    dex: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    tx_hash: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    executed_price: Decimal | None = Field(default=None, sa_column=sa.Column(MONEY))
    amount_out: Decimal | None = Field(default=None, sa_column=sa.Column(MONEY))
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    error_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    spec: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    owner: str | None = Field(default=None, sa_column=sa.Column(sa.Text))  # API key id; see shared/auth


class OrderEventRow(SQLModel, table=True):
    __tablename__ = "order_events"

    order_id: UUID = Field(
        sa_column=sa.Column(
            PG_UUID(as_uuid=True), sa.ForeignKey("orders.order_id", ondelete="CASCADE"), primary_key=True
        )
    )
    seq: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True, autoincrement=False))
    status: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    ts: datetime = Field(sa_column=sa.Column(_tz(), nullable=False))
    payload: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))


# SQLModel sets `__table__` on table models at class creation; its stubs do not declare it.
orders_table: sa.Table = Order.__table__  # type: ignore[attr-defined]
events_table: sa.Table = OrderEventRow.__table__  # type: ignore[attr-defined]
metadata = SQLModel.metadata
