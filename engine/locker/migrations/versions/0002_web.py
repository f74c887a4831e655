"""Web accounts: password hashes and roles of users (credentials), and their saved configurations (projects).

Revision ID: 0002_web
Revises: 0001_locker
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002_web"
down_revision = "0001_locker"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the credentials and projects tables."""
    op.create_table(
        "credentials",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("changed_at", WHEN, nullable=False),
        sa.CheckConstraint("role IN ('partner', 'product-manager')", name="ck_credentials_role"),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("configuration", JSON, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )


def downgrade() -> None:
    """Drop the web tables (the locker's tables stay)."""
    op.drop_table("projects")
    op.drop_table("credentials")
