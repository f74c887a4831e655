"""Sharing: an owner invites a user into their locker; accepting merges the invitee's vouchers into it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.locker import tables, voucher_codes
from engine.locker.db import Store
from engine.locker.lockers import (
    LockerView,
    balances_of,
    emails_of,
    live_locker,
    locker_row,
    record_audit,
    show_locker,
)
from engine.locker.tables import utcnow
from engine.locker.users import normalize_email, user_row
from engine.problem import refusal


@dataclass(frozen=True)
class Invitation:
    """An owner's invitation to share their locker."""

    id: str
    locker_id: int
    inviter: str
    invitee: str
    created_at: datetime
    accepted_at: datetime | None = None
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        """Return the invitation as a JSON-ready dict."""
        return {"id": self.id, "locker_id": self.locker_id, "inviter": self.inviter, "invitee": self.invitee,
                "created_at": self.created_at.isoformat(),
                "accepted_at": self.accepted_at.isoformat() if self.accepted_at else None,
                "warnings": list(self.warnings)}


def _domain(email: str) -> str:
    return email.rsplit("@", 1)[1]


def _invitation_view(session: Session, row: tables.Invitation, warnings=()) -> Invitation:
    return Invitation(id=row.id, locker_id=row.locker_id, inviter=emails_of(session, [row.inviter_id])[row.inviter_id],
                      invitee=row.invitee_email, created_at=row.created_at, accepted_at=row.accepted_at,
                      warnings=tuple(warnings))


def invite(store: Store, owner_email: str, invitee_email: str) -> Invitation:
    """Invite a user to share the owner's locker; warn when the invitee is outside the owner's domain."""
    invitee = normalize_email(invitee_email)
    with store.transaction() as session:
        owner = user_row(session, owner_email, lock=True)
        locker = locker_row(session, owner, lock=True)
        if locker.owner_id != owner.id:
            owner_of = emails_of(session, [locker.owner_id])[locker.owner_id]
            raise refusal("not-owner", f"only the owner of locker {locker.id} ({owner_of}) can invite users",
                          f"ask {owner_of} to send the invitation")
        if invitee == owner.email:
            raise refusal("self-invitation", "you cannot invite yourself")
        member = session.scalar(select(tables.Membership.locker_id).join(tables.User, tables.User.id == tables.Membership.user_id)
                                .where(tables.User.email == invitee))
        if member == locker.id:
            raise refusal("already-member", f"{invitee} already shares your locker")
        warnings = []
        if _domain(invitee) != _domain(owner.email):
            warnings.append(f"{invitee} is outside your company's domain {_domain(owner.email)}; everyone who "
                            "accepts shares all vouchers of this locker, and vouchers can never be moved out")
        pending = session.scalar(select(tables.Invitation).where(
            tables.Invitation.locker_id == locker.id, tables.Invitation.invitee_email == invitee,
            tables.Invitation.accepted_at.is_(None)))
        if pending is not None:
            return _invitation_view(session, pending, warnings)
        row = tables.Invitation(id=voucher_codes.new_invitation_id(), locker_id=locker.id, inviter_id=owner.id,
                                invitee_email=invitee, created_at=utcnow())
        session.add(row)
        session.flush()
        current = balances_of(session, locker.id)
        record_audit(session, locker.id, owner, "invitation",
                     {"invitation": row.id, "invitee": invitee, "warnings": warnings, "before": current,
                      "after": current})
        return _invitation_view(session, row, warnings)


def pending_invitations(store: Store, user_email: str) -> list[Invitation]:
    """Return the invitations waiting for the acting user's acceptance."""
    with store.transaction() as session:
        user = user_row(session, user_email)
        rows = session.scalars(select(tables.Invitation).where(
            tables.Invitation.invitee_email == user.email, tables.Invitation.accepted_at.is_(None))
            .order_by(tables.Invitation.created_at, tables.Invitation.id))
        return [_invitation_view(session, row) for row in rows]


@dataclass(frozen=True)
class Acceptance:
    """An accepted invitation: the shared locker and what was added into it."""

    invitation: Invitation
    locker: LockerView
    merged: dict[str, int]

    def to_json(self) -> dict:
        """Return the acceptance as a JSON-ready dict."""
        return {"invitation": self.invitation.to_json(), "locker": self.locker.to_json(),
                "merged": dict(self.merged)}


def _pick_invitation(session: Session, user: tables.User, invitation_id: str | None) -> tables.Invitation:
    pending = list(session.scalars(select(tables.Invitation).where(
        tables.Invitation.invitee_email == user.email, tables.Invitation.accepted_at.is_(None))
        .order_by(tables.Invitation.created_at, tables.Invitation.id).with_for_update()))
    if invitation_id is not None:
        key = voucher_codes.normalize_invitation_id(invitation_id)
        for row in pending:
            if row.id == key:
                return row
        done = session.get(tables.Invitation, key)
        if done is not None and done.invitee_email == user.email:
            raise refusal("already-accepted", f"invitation {key} was accepted on {done.accepted_at:%Y-%m-%d}")
        raise refusal("unknown-invitation", f"no invitation {key} for {user.email}",
                      "see your pending invitations with: companion locker accept --user EMAIL")
    if not pending:
        raise refusal("no-invitation", f"there is no pending invitation for {user.email}",
                      "ask the owner of the locker to invite you")
    if len(pending) > 1:
        raise refusal("ambiguous-invitation", f"{user.email} has {len(pending)} pending invitations",
                      "accept one by id: " + ", ".join(row.id for row in pending))
    return pending[0]


def accept(store: Store, invitee_email: str, invitation_id: str | None = None) -> Acceptance:
    """Accept an invitation: the invitee joins the owner's locker and their vouchers are added in."""
    with store.transaction() as session:
        user = user_row(session, invitee_email, lock=True)
        invitation = _pick_invitation(session, user, invitation_id)
        # Only the user's own transactions move their membership, and they wait for the user's row lock.
        own_id = session.scalar(select(tables.Membership.locker_id).where(tables.Membership.user_id == user.id))
        if own_id == invitation.locker_id:
            raise refusal("already-member", "you already share this locker")
        # Lock both lockers, by id so that two accepts cannot deadlock, before reading what decides the merge:
        # under PostgreSQL's READ COMMITTED a member who joined the own locker while we waited for its lock
        # would be missed, and left in a locker merged away.
        locked = {}
        for locker_id in sorted({invitation.locker_id, own_id} - {None}):
            locked[locker_id] = session.scalar(select(tables.Locker).where(tables.Locker.id == locker_id)
                                               .with_for_update().execution_options(populate_existing=True))
        if own_id is not None and locked[own_id].merged_into is not None:
            # Left in a merged locker (the race fixed in 851ac72): merging it again would overwrite merged_into
            # and move its history (audit events, activations) into another family.
            raise refusal("locker-merged", f"your locker {own_id} was merged into locker "
                          f"{locked[own_id].merged_into} already and cannot be merged again",
                          "open your locker first (companion locker show): that moves you into the locker "
                          "your vouchers went to")
        if own_id is not None:
            others = session.scalar(select(func.count()).select_from(tables.Membership).where(
                tables.Membership.locker_id == own_id, tables.Membership.user_id != user.id))
            if others:
                raise refusal("already-shared", "your locker is already shared with other users",
                              "a shared locker cannot be merged into another one")
        target = locked[invitation.locker_id]
        if target.merged_into is not None:
            # Not followed: the owner of the locker it went into never invited this user.
            live = live_locker(session, target)
            owner_of = emails_of(session, [live.owner_id])[live.owner_id]
            raise refusal("invitation-expired",
                          f"invitation {invitation.id} is for locker {target.id}, which has since been merged "
                          f"into locker {live.id}", f"ask {owner_of}, the owner of locker {live.id}, to invite you")
        now = utcnow()
        before = balances_of(session, target.id)
        merged: dict[str, int] = {}
        if own_id is None:
            session.add(tables.Membership(user_id=user.id, locker_id=target.id, joined_at=now))
        else:
            own = locked[own_id]
            merged = balances_of(session, own.id)
            for reference, quantity in merged.items():
                session.add(tables.LedgerEntry(locker_id=own.id, reference=reference, quantity=-quantity, kind="merge",
                                               at=now, by_user_id=user.id))
                session.add(tables.LedgerEntry(locker_id=target.id, reference=reference, quantity=quantity,
                                               kind="merge", at=now, by_user_id=user.id))
            own.merged_into = target.id
            membership = session.get(tables.Membership, user.id, populate_existing=True)
            membership.locker_id = target.id
            membership.joined_at = now
            record_audit(session, own.id, user, "merge",
                         {"invitation": invitation.id, "into": target.id, "moved": merged, "before": merged,
                          "after": {}})
        invitation.accepted_at = now
        after = dict(before)
        for reference, quantity in merged.items():
            after[reference] = after.get(reference, 0) + quantity
        after = dict(sorted(after.items()))
        record_audit(session, target.id, user, "acceptance",
                     {"invitation": invitation.id, "member": user.email, "merged_from": own_id, "merged": merged,
                      "before": before, "after": after})
        session.flush()
    return Acceptance(invitation=_invitation_view_after(store, invitation.id), locker=show_locker(store, invitee_email),
                      merged=merged)


def _invitation_view_after(store: Store, invitation_id: str) -> Invitation:
    with store.transaction() as session:
        return _invitation_view(session, session.get(tables.Invitation, invitation_id))
