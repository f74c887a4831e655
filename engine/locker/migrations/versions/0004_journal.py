"""The journal: an append-only record of state changes outside the lockers (accounts, vouchers, projects, orders).

Revision ID: 0004_journal
Revises: 0003_orders
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004_journal"
down_revision = "0003_orders"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the journal table; like the ledger, it refuses updates and deletes."""
    op.create_table(
        "journal",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(320), nullable=False, index=True),
        sa.Column("details", JSON, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # companion_append_only() was created by 0001_locker.
        op.execute("CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON journal "
                   "FOR EACH ROW EXECUTE FUNCTION companion_append_only()")
    elif dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER journal_no_{verb.lower()} BEFORE {verb} ON journal BEGIN "
                       f"SELECT RAISE(ABORT, 'table journal is append-only: {verb} refused'); END")


def downgrade() -> None:
    """Drop the journal (development only)."""
    op.drop_table("journal")
