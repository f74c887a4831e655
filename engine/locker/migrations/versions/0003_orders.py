"""Checkout: the orders placed for a project through the vendor's cart, with their confirmation numbers.

Revision ID: 0003_orders
Revises: 0002_web
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003_orders"
down_revision = "0002_web"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the orders table: one row per (project, idempotency key), so a retried order is stored once.

    Deleting a project keeps its orders (project_id becomes NULL; the project's name stays in the row): an
    order placed with the vendor is a fact, whatever happens to the configuration it came from.
    """
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="SET NULL"), index=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("project_name", sa.String(120), nullable=False),
        sa.Column("account", sa.String(100), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("confirmation", sa.String(100), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lines", JSON, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.UniqueConstraint("project_id", "idempotency_key", name="uq_orders_project_key"),
    )


def downgrade() -> None:
    """Drop the orders table."""
    op.drop_table("orders")
