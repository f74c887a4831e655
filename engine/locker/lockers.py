"""Lockers: each user's live locker, its members and balances, and the audit events written into it.

Every function that touches a locker takes the acting user's email and works only on that user's own
(or shared) locker; another locker is `forbidden`. Balances are never stored: they are the sum of an
append-only ledger per commercial reference. Each change runs in one transaction that first locks the
acting user's row and then the locker's row, so two activations can never spend the same vouchers.
Refusals raise `CompanionError` with a stable code; a shortfall is a result, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.locker import journal, tables
from engine.locker.db import Store
from engine.locker.tables import utcnow
from engine.locker.users import user_row
from engine.problem import refusal

# The journal's actor of a membership moved out of a merged locker (see `_rejoin_live_locker`).
REPAIR_ACTOR = "engine:locker-repair"


def locker_row(session: Session, user: tables.User, *, lock: bool = False) -> tables.Locker:
    """Return the user's live locker, created on first use; with LOCK, hold its row until commit.

    The caller must hold the user's row lock: the locker may have to be created, or the user moved out of a
    merged locker (`_rejoin_live_locker`).
    """
    for _attempt in range(8):
        locker_id = session.scalar(select(tables.Membership.locker_id).where(tables.Membership.user_id == user.id))
        if locker_id is None:
            now = utcnow()
            locker = tables.Locker(owner_id=user.id, created_at=now)
            session.add(locker)
            session.flush()
            session.add(tables.Membership(user_id=user.id, locker_id=locker.id, joined_at=now))
            session.flush()
            return locker
        query = select(tables.Locker).where(tables.Locker.id == locker_id).execution_options(populate_existing=True)
        if lock:
            query = query.with_for_update()
        locker = session.scalar(query)
        if not lock and locker.merged_into is None:
            return locker
        # A merge may have moved the user while we waited for the lock: read the membership again.
        again = session.scalar(select(tables.Membership.locker_id).where(tables.Membership.user_id == user.id))
        if again == locker_id and locker.merged_into is None:
            return locker
        if again == locker_id:  # still a member of a merged locker: nothing else will ever move the user
            return _rejoin_live_locker(session, user, locker)
    raise refusal("busy", "the locker kept changing while it was being locked", "try again")


def _rejoin_live_locker(session: Session, user: tables.User, merged: tables.Locker) -> tables.Locker:
    """Move a member of the merged locker MERGED into the live locker it went into, journaled and audited.

    Only the accept race fixed in 851ac72 left users there (migration 0006 repairs the ones it finds); their
    vouchers went with the merge, so balances do not change. The live locker stays locked until commit.
    """
    live = live_locker(session, merged, lock=True)
    membership = session.get(tables.Membership, user.id, populate_existing=True)
    membership.locker_id = live.id  # joined_at kept, as migration 0006 does
    current = balances_of(session, live.id)
    record_audit(session, live.id, user, "membership-repaired",
                 {"member": user.email, "from_locker": merged.id, "to_locker": live.id, "by": REPAIR_ACTOR,
                  "before": current, "after": current})
    journal.record(session, REPAIR_ACTOR, "membership-repaired", user.email,
                   {"from_locker": merged.id, "to_locker": live.id})
    session.flush()
    return live


def family(session: Session, locker_id: int) -> set[int]:
    """Return the locker and every locker merged into it, directly or not."""
    family, frontier = {locker_id}, [locker_id]
    while frontier:
        found = set(session.scalars(select(tables.Locker.id).where(tables.Locker.merged_into.in_(frontier))))
        frontier = list(found - family)
        family |= found
    return family


def balances_of(session: Session, locker_id: int) -> dict[str, int]:
    """Return the locker's balance per commercial reference, summed from its ledger (zero balances left out)."""
    rows = session.execute(
        select(tables.LedgerEntry.reference, func.sum(tables.LedgerEntry.quantity))
        .where(tables.LedgerEntry.locker_id == locker_id)
        .group_by(tables.LedgerEntry.reference)
    )
    return {reference: int(total) for reference, total in sorted(rows) if int(total) != 0}


def live_locker(session: Session, locker: tables.Locker, *, lock: bool = False) -> tables.Locker:
    """Return the live locker that LOCKER was merged into, directly or not (LOCKER itself when live).

    With LOCK, each locker on the way is locked until commit and read afresh.
    """
    while locker.merged_into is not None:
        query = select(tables.Locker).where(tables.Locker.id == locker.merged_into)
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        locker = session.scalar(query)
    return locker


def emails_of(session: Session, user_ids) -> dict[int, str]:
    """Return the email of each user id of USER_IDS."""
    ids = set(user_ids)
    if not ids:
        return {}
    return dict(session.execute(select(tables.User.id, tables.User.email).where(tables.User.id.in_(ids))).all())


def record_audit(session: Session, locker_id: int, actor: tables.User, action: str, details: dict) -> None:
    """Add an audit event of the locker inside the caller's transaction."""
    session.add(tables.AuditEvent(locker_id=locker_id, actor_id=actor.id, action=action, at=utcnow(),
                                  details=details))


def check_access(session: Session, locker: tables.Locker, locker_id: int | None) -> None:
    """Refuse LOCKER_ID as `forbidden` unless it is LOCKER or a locker merged into it."""
    if locker_id is not None and int(locker_id) not in family(session, locker.id):
        raise refusal("forbidden", f"locker {locker_id} is not yours",
                      "you can only see your own locker and the locker shared with you")


@dataclass(frozen=True)
class LockerView:
    """What a member sees of their locker."""

    id: int
    owner: str
    members: tuple[str, ...]
    balances: dict[str, int]
    activations: tuple[dict, ...] = ()

    @property
    def shared(self) -> bool:
        """Return whether more than one user works in this locker."""
        return len(self.members) > 1

    def to_json(self) -> dict:
        """Return the locker as a JSON-ready dict."""
        return {"id": self.id, "owner": self.owner, "members": list(self.members), "shared": self.shared,
                "balances": dict(self.balances), "activations": list(self.activations)}


def show_locker(store: Store, user_email: str, locker_id: int | None = None) -> LockerView:
    """Return the acting user's locker: owner, members, balances and activations."""
    with store.transaction() as session:
        user = user_row(session, user_email, lock=True)
        locker = locker_row(session, user)
        check_access(session, locker, locker_id)
        members = list(session.scalars(select(tables.Membership.user_id).where(tables.Membership.locker_id == locker.id)))
        emails = emails_of(session, [locker.owner_id, *members])
        activations = session.execute(
            select(tables.Activation.id, tables.Activation.kind, tables.Activation.activated_on, tables.Activation.parent_id)
            .where(tables.Activation.locker_id.in_(family(session, locker.id)))
            .order_by(tables.Activation.created_at, tables.Activation.id)
        ).all()
        return LockerView(
            id=locker.id, owner=emails[locker.owner_id],
            members=tuple(sorted(emails[user_id] for user_id in members)),
            balances=balances_of(session, locker.id),
            activations=tuple({"id": row.id, "kind": row.kind, "on": row.activated_on.isoformat(),
                               "parent": row.parent_id} for row in activations),
        )


def balances(store: Store, user_email: str) -> dict[str, int]:
    """Return the acting user's balance per commercial reference (zero balances left out)."""
    return show_locker(store, user_email).balances
