"""The journal: an append-only record of every state change outside the lockers' own audit trail.

Locker changes (redemptions, activations, invitations, merges) are audit events of their locker
(engine/locker/audit_trail.py). Everything else that changes state is recorded here, in the same transaction as the
change: users added or changed, passwords and roles set, vouchers issued, projects saved, copied or deleted,
orders placed; and what an operator or a repair did to a locker besides its own audit event (an activation
backdated from the command line, a membership moved off a merged locker). Who did it is the acting user's email, or `cli:<operating-system user>` for the command line.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine.locker.db import Store
from engine.locker.tables import JournalRow, utcnow

MAX_ENTRIES = 1000


def command_line_actor() -> str:
    """Name the operator of a command-line change."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment (a container without /etc/passwd entry)
        return "cli:unknown"


def record(session: Session, actor: str | None, action: str, subject: str, details: dict) -> None:
    """Add a journal entry inside the caller's transaction."""
    session.add(JournalRow(at=utcnow(), actor=actor or command_line_actor(), action=action, subject=subject,
                           details=details))


@dataclass(frozen=True)
class JournalEntry:
    """A journal entry as shown to people."""

    at: datetime
    actor: str
    action: str
    subject: str
    details: dict

    def to_json(self) -> dict:
        """Return the entry as a JSON-ready dict."""
        return {"at": self.at.isoformat(), "actor": self.actor, "action": self.action, "subject": self.subject,
                "details": self.details}


def entries(store: Store, about: str | None = None, limit: int = MAX_ENTRIES) -> list[JournalEntry]:
    """Return the newest entries (oldest first), those by or about ABOUT when given."""
    query = select(JournalRow).order_by(JournalRow.id.desc()).limit(limit)
    if about:
        query = query.where(or_(JournalRow.subject == about, JournalRow.actor == about))
    with store.transaction() as session:
        rows = list(session.scalars(query))
        return [JournalEntry(row.at, row.actor, row.action, row.subject, dict(row.details)) for row in reversed(rows)]
