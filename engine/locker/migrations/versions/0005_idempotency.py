"""Idempotency keys: the first answer to each request sent with a key, kept at least 24 hours.

Revision ID: 0005_idempotency
Revises: 0004_journal
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_idempotency"
down_revision = "0004_journal"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the idempotency_keys table: one row per owner and key."""
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(320), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),  # JSON text, replayed byte for byte
        sa.Column("created_at", WHEN, nullable=False),
        sa.UniqueConstraint("owner", "key", name="uq_idempotency_owner_key"),
    )
    op.create_index("ix_idempotency_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    """Drop the idempotency keys (development only)."""
    op.drop_table("idempotency_keys")
