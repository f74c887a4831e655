"""Repair memberships stranded in merged lockers: each such member moves into the live locker of its merge chain.

A race in accept() (fixed in 851ac72) could merge a locker away while another user was joining it: that user
stayed a member of the merged locker, saw no balances, and every redeem or activation answered `busy`. Their
vouchers were carried along by the merge. Each such membership now points at the live root of its locker's
merge chain (joined_at kept), with a journal entry and an audit event of that locker. A healthy database is
left as it is. Plain SQL on the tables as this revision knows them: the ORM models change over time.

Revision ID: 0006_repair_stranded
Revises: 0005_idempotency
Create Date: 2026-12-03
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006_repair_stranded"
down_revision = "0005_idempotency"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)
ACTOR = "migration:0006"
ACTION = "membership-repaired"

users = sa.table("users", sa.column("id", sa.Integer), sa.column("email", sa.String))
lockers = sa.table("lockers", sa.column("id", sa.Integer), sa.column("merged_into", sa.Integer))
memberships = sa.table("memberships", sa.column("user_id", sa.Integer), sa.column("locker_id", sa.Integer))
ledger = sa.table("ledger", sa.column("locker_id", sa.Integer), sa.column("reference", sa.String),
                  sa.column("quantity", sa.Integer))
audit_events = sa.table("audit_events", sa.column("locker_id", sa.Integer), sa.column("actor_id", sa.Integer),
                        sa.column("action", sa.String), sa.column("at", WHEN), sa.column("details", JSON))
journal = sa.table("journal", sa.column("at", WHEN), sa.column("actor", sa.String), sa.column("action", sa.String),
                   sa.column("subject", sa.String), sa.column("details", JSON))


def upgrade() -> None:
    """Move every member of a merged locker into the live root of its merge chain; journal and audit each move."""
    connection = op.get_bind()
    stranded = connection.scalars(
        sa.select(memberships.c.user_id).join(lockers, lockers.c.id == memberships.c.locker_id)
        .where(lockers.c.merged_into.is_not(None)).order_by(memberships.c.user_id)).all()
    now = datetime.now(timezone.utc)
    if connection.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # as engine.locker.tables.UTCDateTime stores it
    for user_id in stranded:
        # Locked as the engine locks (user, then locker): a server of the previous release may still be running.
        email = connection.scalar(sa.select(users.c.email).where(users.c.id == user_id).with_for_update())
        from_locker = connection.scalar(sa.select(memberships.c.locker_id).where(memberships.c.user_id == user_id))
        to_locker = _live_root(connection, from_locker)
        if to_locker == from_locker:  # moved meanwhile
            continue
        connection.execute(memberships.update().where(memberships.c.user_id == user_id)
                           .values(locker_id=to_locker))
        # The member's vouchers went with the merge: the live locker's balances do not change.
        current = _balances(connection, to_locker)
        connection.execute(audit_events.insert().values(
            locker_id=to_locker, actor_id=user_id, action=ACTION, at=now,
            details={"member": email, "from_locker": from_locker, "to_locker": to_locker, "by": ACTOR,
                     "before": current, "after": current}))
        connection.execute(journal.insert().values(
            at=now, actor=ACTOR, action=ACTION, subject=email,
            details={"from_locker": from_locker, "to_locker": to_locker}))


def _live_root(connection, locker_id: int) -> int:
    """Return the locker reached from LOCKER_ID by following merged_into until it is NULL, locking each."""
    chain = [locker_id]
    while True:
        merged_into = connection.scalar(sa.select(lockers.c.merged_into).where(lockers.c.id == chain[-1])
                                        .with_for_update())
        if merged_into is None:
            return chain[-1]
        if merged_into in chain:  # the engine never makes one; following it would never end
            raise RuntimeError(f"lockers {chain + [merged_into]} are merged into each other in a cycle; "
                               "repair merged_into by hand, then upgrade again")
        chain.append(merged_into)


def _balances(connection, locker_id: int) -> dict[str, int]:
    """Return the locker's balance per reference, zero balances left out (as engine.locker computes it)."""
    rows = connection.execute(sa.select(ledger.c.reference, sa.func.sum(ledger.c.quantity))
                              .where(ledger.c.locker_id == locker_id).group_by(ledger.c.reference))
    return {reference: int(total) for reference, total in sorted(rows) if int(total) != 0}


def downgrade() -> None:
    """Nothing to undo: the members stay in the live lockers, and the journal and audit trail keep the repair."""
