"""Orders placed through checkout: the cart's confirmation number stored with the project (migration 0003_orders).

Only storage lives here: what may be ordered, the order itself and its idempotency key come from
engine.services.checkout. One row per (project, idempotency key): the same order confirmed twice (a second press of the
button, a retry after a failure) is sent with the same key, the cart answers with the first confirmation, and
it is stored once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from engine.locker import journal, tables
from engine.locker.db import Store
from engine.locker.tables import OrderRow, utcnow
from engine.locker.users import normalize_email
from engine.problem import CompanionError, Problem


@dataclass(frozen=True)
class PlacedOrder:
    """A stored order: its confirmation number and what was ordered."""

    id: int
    project_id: int | None
    project_name: str
    account: str
    idempotency_key: str
    confirmation: str
    attempts: int
    lines: tuple[dict, ...]
    created_at: datetime

    def to_json(self) -> dict:
        """Return the order as a JSON-ready dict."""
        return {"id": self.id, "project_id": self.project_id, "project_name": self.project_name,
                "account": self.account, "idempotency_key": self.idempotency_key,
                "confirmation": self.confirmation, "attempts": self.attempts, "lines": list(self.lines),
                "created_at": self.created_at.isoformat()}


def _view(row: OrderRow) -> PlacedOrder:
    return PlacedOrder(row.id, row.project_id, row.project_name, row.account, row.idempotency_key, row.confirmation,
                       row.attempts, tuple(row.lines), row.created_at)


def _user_id(session, email: str) -> int:
    user_id = session.scalar(select(tables.User.id).where(tables.User.email == normalize_email(email)))
    if user_id is None:
        raise CompanionError([Problem("unknown-user", f"no user '{email}'")])
    return user_id


def record(store: Store, email: str, project, order, confirmation) -> PlacedOrder:
    """Store the cart's confirmation of ORDER (engine.services.checkout.Order) for PROJECT; once per idempotency key."""

    def existing(session):
        return session.scalar(select(OrderRow).where(OrderRow.project_id == project.id,
                                                     OrderRow.idempotency_key == order.idempotency_key))

    try:
        with store.transaction() as session:
            row = existing(session)
            if row is None:
                row = OrderRow(project_id=project.id, user_id=_user_id(session, email), project_name=project.name,
                               account=order.account, idempotency_key=order.idempotency_key,
                               confirmation=confirmation.number, attempts=confirmation.attempts,
                               lines=[dict(line) for line in order.lines], created_at=utcnow())
                session.add(row)
                session.flush()
                journal.record(session, normalize_email(email), "order-placed", normalize_email(email),
                               {"project": project.id, "order": row.id, "confirmation": row.confirmation,
                                "idempotency_key": row.idempotency_key, "account": row.account})
            return _view(row)
    except IntegrityError:  # a concurrent confirm stored it first (PostgreSQL; SQLite writers queue up)
        with store.transaction() as session:
            return _view(existing(session))


def find(store: Store, email: str, project_id: int, idempotency_key: str) -> PlacedOrder | None:
    """Return the user's stored order of this project with this key, if it was placed."""
    with store.transaction() as session:
        row = session.scalar(select(OrderRow).where(OrderRow.project_id == project_id,
                                                    OrderRow.user_id == _user_id(session, email),
                                                    OrderRow.idempotency_key == idempotency_key))
        return _view(row) if row is not None else None


def of_projects(store: Store, email: str) -> dict[int, list[PlacedOrder]]:
    """Return the user's orders by project id, newest first."""
    with store.transaction() as session:
        rows = session.scalars(select(OrderRow).where(OrderRow.user_id == _user_id(session, email),
                                                      OrderRow.project_id.is_not(None))
                               .order_by(OrderRow.created_at.desc(), OrderRow.id.desc()))
        found: dict[int, list[PlacedOrder]] = {}
        for row in rows:
            found.setdefault(row.project_id, []).append(_view(row))
        return found
