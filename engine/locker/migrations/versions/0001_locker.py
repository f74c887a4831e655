"""The Digital Locker: users, lockers, vouchers, redemptions, activations, ledger, invitations, audit.

Revision ID: 0001_locker
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_locker"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)
APPEND_ONLY = ("ledger", "audit_events", "redemptions", "vouchers")


def upgrade() -> None:
    """Create the locker tables and refuse UPDATE and DELETE on the append-only ones."""
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("company", sa.String(200), nullable=False),
        sa.Column("badges", JSON, nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("purchasing_account", sa.String(100)),
        sa.Column("created_at", WHEN, nullable=False),
    )
    op.create_table(
        "lockers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("merged_into", sa.Integer, sa.ForeignKey("lockers.id")),
    )
    op.create_table(
        "memberships",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("locker_id", sa.Integer, sa.ForeignKey("lockers.id"), nullable=False, index=True),
        sa.Column("joined_at", WHEN, nullable=False),
    )
    op.create_table(
        "vouchers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(32), nullable=False, unique=True),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("issued_at", WHEN, nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_vouchers_quantity_positive"),
    )
    op.create_table(
        "redemptions",
        sa.Column("voucher_id", sa.Integer, sa.ForeignKey("vouchers.id"), primary_key=True),
        sa.Column("locker_id", sa.Integer, sa.ForeignKey("lockers.id"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("at", WHEN, nullable=False),
    )
    op.create_table(
        "activations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("locker_id", sa.Integer, sa.ForeignKey("lockers.id"), nullable=False, index=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(32), sa.ForeignKey("activations.id")),
        sa.Column("configuration", JSON, nullable=False),
        sa.Column("rules_version", sa.String(128), nullable=False),
        sa.Column("badges", JSON, nullable=False),
        sa.Column("lines", JSON, nullable=False),
        sa.Column("activated_on", sa.Date, nullable=False),
        sa.Column("term_start", sa.Date, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.CheckConstraint("kind IN ('activation', 'amendment', 'renewal')", name="ck_activations_kind"),
    )
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("locker_id", sa.Integer, sa.ForeignKey("lockers.id"), nullable=False, index=True),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("voucher_id", sa.Integer, sa.ForeignKey("vouchers.id")),
        sa.Column("activation_id", sa.String(32), sa.ForeignKey("activations.id"), index=True),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("by_user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.CheckConstraint("kind IN ('redemption', 'activation', 'merge')", name="ck_ledger_kind"),
        sa.CheckConstraint("quantity <> 0", name="ck_ledger_quantity_nonzero"),
    )
    op.create_table(
        "invitations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("locker_id", sa.Integer, sa.ForeignKey("lockers.id"), nullable=False),
        sa.Column("inviter_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("invitee_email", sa.String(254), nullable=False, index=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("accepted_at", WHEN),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("locker_id", sa.Integer, sa.ForeignKey("lockers.id"), nullable=False, index=True),
        sa.Column("actor_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("details", JSON, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION companion_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION companion_append_only()"
            )
    elif dialect == "sqlite":
        for table in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} BEGIN "
                    f"SELECT RAISE(ABORT, 'table {table} is append-only: {verb} refused'); END"
                )


def downgrade() -> None:
    """Drop everything (development only: the ledger is the money)."""
    for table in ("audit_events", "invitations", "ledger", "activations", "redemptions", "vouchers",
                  "memberships", "lockers", "users"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS companion_append_only()")
