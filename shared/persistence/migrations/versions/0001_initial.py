"""orders and order_events

Revision ID: 0001_initial
Revises:
Create Date: 2026-01-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("token_in", sa.Text(), nullable=False),
        sa.Column("token_out", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("slippage_bps", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("client_order_id", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("limit_price", sa.Numeric(), nullable=True),
        sa.Column("trigger", postgresql.JSONB(), nullable=True),
        sa.Column("expires_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("dex", sa.Text(), nullable=True),
        sa.Column("tx_hash", sa.Text(), nullable=True),
        sa.Column("executed_price", sa.Numeric(), nullable=True),
        sa.Column("amount_out", sa.Numeric(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("spec", postgresql.JSONB(), nullable=False),
    )
    desc = sa.text
    op.create_index("ix_orders_created_at_order_id", "orders", [desc("created_at DESC"), desc("order_id DESC")])
    op.create_index(
        "ix_orders_user_id_created_at", "orders", ["user_id", desc("created_at DESC"), desc("order_id DESC")]
    )
    op.create_index("ix_orders_status_created_at", "orders", ["status", desc("created_at DESC"), desc("order_id DESC")])
    op.create_table(
        "order_events",
        sa.Column(
            "order_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("orders.order_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("ts", TZ, nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("order_events")
    op.drop_index("ix_orders_status_created_at", table_name="orders")
    op.drop_index("ix_orders_user_id_created_at", table_name="orders")
    op.drop_index("ix_orders_created_at_order_id", table_name="orders")
    op.drop_table("orders")
