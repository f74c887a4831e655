"""The audit trail: who did what to a locker and to the lockers merged into it, with balances before and after."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select

from engine.locker import tables
from engine.locker.db import Store
from engine.locker.lockers import check_access, emails_of, family, locker_row
from engine.locker.users import user_row


@dataclass(frozen=True)
class AuditEvent:
    """Who did what to a locker, when, with the balances before and after."""

    id: int
    locker_id: int
    actor: str
    action: str
    at: datetime
    details: dict

    def to_json(self) -> dict:
        """Return the event as a JSON-ready dict."""
        return {**asdict(self), "at": self.at.isoformat()}


def audit(store: Store, user_email: str, locker_id: int | None = None) -> list[AuditEvent]:
    """Return the audit events of the acting user's locker and of the lockers merged into it, oldest first."""
    with store.transaction() as session:
        user = user_row(session, user_email, lock=True)
        locker = locker_row(session, user)
        check_access(session, locker, locker_id)
        rows = list(session.scalars(select(tables.AuditEvent)
                                    .where(tables.AuditEvent.locker_id.in_(family(session, locker.id)))
                                    .order_by(tables.AuditEvent.id)))
        emails = emails_of(session, [row.actor_id for row in rows])
        return [AuditEvent(id=row.id, locker_id=row.locker_id, actor=emails[row.actor_id], action=row.action,
                           at=row.at, details=row.details) for row in rows]
