"""orders.owner: the API key id that placed the order (NULL with keys disabled)

Revision ID: 0002_order_owner
Revises: 0001_initial
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_order_owner"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("owner", sa.Text(), nullable=True))
    op.create_index(
        "ix_orders_owner_created_at", "orders", ["owner", sa.text("created_at DESC"), sa.text("order_id DESC")]
    )


def downgrade() -> None:
    op.drop_index("ix_orders_owner_created_at", table_name="orders")
    op.drop_column("orders", "owner")
