"""The Digital Locker: users, vouchers, the ledger, coverage, activation, sharing and audit.

Every function that touches a locker takes the acting user's email and works only on that user's own
(or shared) locker; another locker is `forbidden`. Balances are never stored: they are the sum of an
append-only ledger per commercial reference. Each change runs in one transaction that first locks the
acting user's row and then the locker's row, so two activations can never spend the same vouchers.
Refusals raise `CompanionError` with a stable code; a shortfall is a result, not an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.locker import journal, tables, voucher_codes
from engine.catalogue.model import FIRST_DAY, LAST_DAY
from engine.problem import Problem, refusal
from engine.locker.db import Store
from engine.locker.tables import utcnow
from engine.services.coverage import VoucherCoverage, as_requirement, cover

KINDS = ("activation", "amendment", "renewal")
EMAIL_PATTERN = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$"
)
COUNTRY_PATTERN = re.compile(r"^[A-Z]{2}$")
BADGE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
REFERENCE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
MAX_VOUCHERS_PER_ISSUE = 10_000
# Units one voucher holds: a balance summed over many such vouchers must stay a 64-bit database integer.
MAX_VOUCHER_QUANTITY = 1_000_000
# The journal's actor of a membership moved out of a merged locker (see `_rejoin_live_locker`).
REPAIR_ACTOR = "engine:locker-repair"
_UNSET: Any = object()


# --- users -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """A partner account as the locker sees it."""

    email: str
    company: str
    badges: tuple[str, ...]
    country: str
    purchasing_account: str | None
    created_at: datetime

    def to_json(self) -> dict:
        """Return the user as a JSON-ready dict."""
        data = asdict(self)
        data["badges"] = list(self.badges)
        data["created_at"] = self.created_at.isoformat()
        return data


def normalize_email(email: str) -> str:
    """Return EMAIL lower-cased and trimmed, or raise `malformed-email`."""
    text = str(email or "").strip()
    if len(text) > 254 or not EMAIL_PATTERN.match(text):
        raise refusal("malformed-email", f"'{email}' is not an email address",
                      "write it as name@company.example")
    return text.lower()


def _country(country: str) -> str:
    text = str(country or "").strip().upper()
    if not COUNTRY_PATTERN.match(text):
        raise refusal("bad-country", f"'{country}' is not an ISO 3166-1 alpha-2 country code",
                      "use two letters such as US, FR or DE")
    return text


def _badges(badges) -> list[str]:
    if isinstance(badges, str):
        badges = [part for part in badges.split(",")]
    result: list[str] = []
    for badge in badges or []:
        text = str(badge).strip().lower()
        if not BADGE_PATTERN.match(text):
            raise refusal("bad-badge", f"'{badge}' is not a badge id",
                          "badge ids are kebab-case, e.g. power-management")
        if text not in result:
            result.append(text)
    return result


def _company(company: str) -> str:
    text = str(company or "").strip()
    if not text or len(text) > 200:
        raise refusal("bad-company", "a company name is required (at most 200 characters)",
                      "pass --company 'Name of the partner company'")
    return text


def _account(account: str | None) -> str | None:
    if account is None:
        return None
    text = str(account).strip()
    if len(text) > 100:
        raise refusal("bad-purchasing-account", "a purchasing account has at most 100 characters")
    return text or None


def _user_view(row: tables.User) -> User:
    return User(email=row.email, company=row.company, badges=tuple(row.badges), country=row.country,
                purchasing_account=row.purchasing_account, created_at=row.created_at)


def _user_row(session: Session, email: str, *, lock: bool = False) -> tables.User:
    key = normalize_email(email)
    query = select(tables.User).where(tables.User.email == key)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    row = session.scalar(query)
    if row is None:
        raise refusal("unknown-user", f"no user '{key}'",
                      f"add the user first: companion users add {key} --company ... --badges ... --country ...")
    return row


def add_user(store: Store, email: str, *, company: str, badges, country: str,
             purchasing_account: str | None = None, actor: str | None = None) -> User:
    """Add a user; the email is unique regardless of case. ACTOR (default: the command line) is journaled."""
    row = tables.User(email=normalize_email(email), company=_company(company), badges=_badges(badges),
                  country=_country(country), purchasing_account=_account(purchasing_account),
                  created_at=utcnow())
    try:
        with store.transaction() as session:
            if session.scalar(select(tables.User.id).where(tables.User.email == row.email)) is not None:
                raise refusal("duplicate-user", f"user '{row.email}' already exists",
                              f"change it with: companion users set {row.email} ...")
            session.add(row)
            journal.record(session, actor, "user-added", row.email, _user_fields(row))
    except IntegrityError:
        raise refusal("duplicate-user", f"user '{row.email}' already exists",
                      f"change it with: companion users set {row.email} ...") from None
    return _user_view(row)


def set_user(store: Store, email: str, *, company: str | None = None, badges=None, country: str | None = None,
             purchasing_account: str | None = _UNSET, actor: str | None = None) -> User:
    """Change the given fields of a user (an empty purchasing account clears it); the change is journaled."""
    with store.transaction() as session:
        row = _user_row(session, email, lock=True)
        before = _user_fields(row)
        if company is not None:
            row.company = _company(company)
        if badges is not None:
            row.badges = _badges(badges)
        if country is not None:
            row.country = _country(country)
        if purchasing_account is not _UNSET:
            row.purchasing_account = _account(purchasing_account)
        journal.record(session, actor, "user-changed", row.email, {"before": before, "after": _user_fields(row)})
        return _user_view(row)


def _user_fields(row: tables.User) -> dict:
    """Return what the journal keeps of a user."""
    return {"company": row.company, "badges": list(row.badges), "country": row.country,
            "purchasing_account": row.purchasing_account}


def get_user(store: Store, email: str) -> User:
    """Return the user with EMAIL, or raise `unknown-user`."""
    with store.transaction() as session:
        return _user_view(_user_row(session, email))


def list_users(store: Store) -> list[User]:
    """Return every user, by email."""
    with store.transaction() as session:
        return [_user_view(row) for row in session.scalars(select(tables.User).order_by(tables.User.email))]


# --- lockers -----------------------------------------------------------------------------------------


def _locker_row(session: Session, user: tables.User, *, lock: bool = False) -> tables.Locker:
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
    live = _live_locker(session, merged, lock=True)
    membership = session.get(tables.Membership, user.id, populate_existing=True)
    membership.locker_id = live.id  # joined_at kept, as migration 0006 does
    current = _balances(session, live.id)
    _audit(session, live.id, user, "membership-repaired",
           {"member": user.email, "from_locker": merged.id, "to_locker": live.id, "by": REPAIR_ACTOR,
            "before": current, "after": current})
    journal.record(session, REPAIR_ACTOR, "membership-repaired", user.email,
                   {"from_locker": merged.id, "to_locker": live.id})
    session.flush()
    return live


def _family(session: Session, locker_id: int) -> set[int]:
    """Return the locker and every locker merged into it, directly or not."""
    family, frontier = {locker_id}, [locker_id]
    while frontier:
        found = set(session.scalars(select(tables.Locker.id).where(tables.Locker.merged_into.in_(frontier))))
        frontier = list(found - family)
        family |= found
    return family


def _balances(session: Session, locker_id: int) -> dict[str, int]:
    rows = session.execute(
        select(tables.LedgerEntry.reference, func.sum(tables.LedgerEntry.quantity))
        .where(tables.LedgerEntry.locker_id == locker_id)
        .group_by(tables.LedgerEntry.reference)
    )
    return {reference: int(total) for reference, total in sorted(rows) if int(total) != 0}


def _live_locker(session: Session, locker: tables.Locker, *, lock: bool = False) -> tables.Locker:
    """Return the live locker that LOCKER was merged into, directly or not (LOCKER itself when live).

    With LOCK, each locker on the way is locked until commit and read afresh.
    """
    while locker.merged_into is not None:
        query = select(tables.Locker).where(tables.Locker.id == locker.merged_into)
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        locker = session.scalar(query)
    return locker


def _emails(session: Session, user_ids) -> dict[int, str]:
    ids = set(user_ids)
    if not ids:
        return {}
    return dict(session.execute(select(tables.User.id, tables.User.email).where(tables.User.id.in_(ids))).all())


def _audit(session: Session, locker_id: int, actor: tables.User, action: str, details: dict) -> None:
    session.add(tables.AuditEvent(locker_id=locker_id, actor_id=actor.id, action=action, at=utcnow(),
                              details=details))


def _check_access(session: Session, locker: tables.Locker, locker_id: int | None) -> None:
    if locker_id is not None and int(locker_id) not in _family(session, locker.id):
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
        user = _user_row(session, user_email, lock=True)
        locker = _locker_row(session, user)
        _check_access(session, locker, locker_id)
        members = list(session.scalars(select(tables.Membership.user_id).where(tables.Membership.locker_id == locker.id)))
        emails = _emails(session, [locker.owner_id, *members])
        activations = session.execute(
            select(tables.Activation.id, tables.Activation.kind, tables.Activation.activated_on, tables.Activation.parent_id)
            .where(tables.Activation.locker_id.in_(_family(session, locker.id)))
            .order_by(tables.Activation.created_at, tables.Activation.id)
        ).all()
        return LockerView(
            id=locker.id, owner=emails[locker.owner_id],
            members=tuple(sorted(emails[user_id] for user_id in members)),
            balances=_balances(session, locker.id),
            activations=tuple({"id": row.id, "kind": row.kind, "on": row.activated_on.isoformat(),
                               "parent": row.parent_id} for row in activations),
        )


def balances(store: Store, user_email: str) -> dict[str, int]:
    """Return the acting user's balance per commercial reference (zero balances left out)."""
    return show_locker(store, user_email).balances


# --- vouchers ----------------------------------------------------------------------------------------


def _reference(reference: str) -> str:
    text = str(reference or "").strip()
    if not REFERENCE_PATTERN.match(text):
        raise refusal("bad-reference", f"'{reference}' is not a commercial reference",
                      "references are letters, digits and . _ / - (at most 64)")
    return text


def _positive(value, name: str, code: str, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (upper and value > upper):
        limit = f" and at most {upper}" if upper else ""
        raise refusal(code, f"{name} must be a whole number of at least 1{limit}, got {value!r}")
    return value


def issue_vouchers(store: Store, reference: str, quantity: int, count: int = 1, actor: str | None = None) -> list[str]:
    """Create COUNT new voucher codes, each for QUANTITY of REFERENCE (the vendor's order fulfilment)."""
    reference = _reference(reference)
    quantity = _positive(quantity, "quantity", "bad-quantity", MAX_VOUCHER_QUANTITY)
    count = _positive(count, "count", "bad-count", MAX_VOUCHERS_PER_ISSUE)
    now = utcnow()
    issued = [voucher_codes.new_voucher_code() for _ in range(count)]
    with store.transaction() as session:
        session.add_all(tables.Voucher(code=code.replace("-", ""), reference=reference, quantity=quantity,
                                   issued_at=now) for code in issued)
        # The codes are bearer secrets: the journal keeps only their last group, enough to trace one.
        journal.record(session, actor, "vouchers-issued", reference,
                       {"quantity": quantity, "count": count, "codes": [f"...{code[-5:]}" for code in issued]})
    return issued


@dataclass(frozen=True)
class Redemption:
    """A voucher credited to a locker."""

    code: str
    reference: str
    quantity: int
    locker_id: int
    at: datetime
    balance: int

    def to_json(self) -> dict:
        """Return the redemption as a JSON-ready dict."""
        return {**asdict(self), "at": self.at.isoformat()}


def redeem(store: Store, user_email: str, code: str) -> Redemption:
    """Credit the voucher CODE to the acting user's locker; a code redeems once."""
    symbols = voucher_codes.normalize_voucher_code(code)
    shown = voucher_codes.format_voucher_code(symbols)
    try:
        with store.transaction() as session:
            user = _user_row(session, user_email, lock=True)
            voucher = session.scalar(select(tables.Voucher).where(tables.Voucher.code == symbols))
            if voucher is None:
                raise refusal("unknown-code", f"voucher {shown} does not exist",
                              "the code is well formed but was never issued; check your order confirmation")
            locker = _locker_row(session, user, lock=True)
            earlier = session.get(tables.Redemption, voucher.id)
            if earlier is not None:
                raise _already_redeemed(session, shown, earlier, locker)
            before = _balances(session, locker.id)
            now = utcnow()
            session.add(tables.Redemption(voucher_id=voucher.id, locker_id=locker.id, user_id=user.id, at=now))
            session.add(tables.LedgerEntry(locker_id=locker.id, reference=voucher.reference,
                                       quantity=voucher.quantity, kind="redemption", voucher_id=voucher.id,
                                       at=now, by_user_id=user.id))
            session.flush()
            after = dict(before)
            after[voucher.reference] = after.get(voucher.reference, 0) + voucher.quantity
            _audit(session, locker.id, user, "redemption",
                   {"code": shown, "reference": voucher.reference, "quantity": voucher.quantity,
                    "before": before, "after": after})
            return Redemption(code=shown, reference=voucher.reference, quantity=voucher.quantity,
                              locker_id=locker.id, at=now, balance=after[voucher.reference])
    except IntegrityError:  # another transaction redeemed it first
        raise refusal("already-redeemed", f"voucher {shown} has already been redeemed",
                      "a voucher code can be redeemed only once") from None


def _already_redeemed(session: Session, shown: str, earlier: tables.Redemption, locker: tables.Locker):
    if earlier.locker_id in _family(session, locker.id):
        by = _emails(session, [earlier.user_id]).get(earlier.user_id, "?")
        return refusal("already-redeemed",
                       f"voucher {shown} was already redeemed into your locker {locker.id} "
                       f"on {earlier.at:%Y-%m-%d %H:%M} UTC by {by}",
                       "its quantity is already in your balance: companion locker show")
    return refusal("already-redeemed", f"voucher {shown} has already been redeemed",
                   "a voucher code can be redeemed only once; contact whoever gave you the code")


# --- activation --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Activation:
    """A licence configuration activated from a locker, with its Activation ID."""

    id: str
    kind: str
    parent: str | None
    locker_id: int
    user: str
    configuration: dict
    rules_version: str
    badges: tuple[str, ...]
    lines: tuple[dict, ...]
    debits: dict[str, int]
    activated_on: date
    term_start: date
    created_at: datetime

    def to_json(self) -> dict:
        """Return the activation as a JSON-ready dict."""
        return {"id": self.id, "kind": self.kind, "parent": self.parent, "locker_id": self.locker_id,
                "user": self.user, "configuration": self.configuration, "rules_version": self.rules_version,
                "badges": list(self.badges), "lines": list(self.lines), "debits": dict(self.debits),
                "activated_on": self.activated_on.isoformat(), "term_start": self.term_start.isoformat(),
                "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class Shortfall:
    """The locker does not cover the configuration; nothing was debited."""

    coverage: VoucherCoverage
    balances: dict[str, int] = field(default_factory=dict)

    @property
    def missing(self) -> dict[str, int]:
        """Return how many more vouchers are needed per voucher reference."""
        return self.coverage.missing

    def problems(self) -> list[Problem]:
        """Return one `shortfall` problem per line that is not covered."""
        return [Problem(code="shortfall", rule=line.reference,
                        message=f"short by {line.short.quantity} x {line.short.voucher_reference} "
                                f"({line.short.units} of {line.units} units not covered)",
                        hint=line.advice)
                for line in self.coverage.lines if line.short]

    def to_json(self) -> dict:
        """Return the shortfall as a JSON-ready dict."""
        return {"activated": False, "missing": self.missing, "balances": dict(self.balances),
                "coverage": self.coverage.to_json()}


def _jsonable(value):
    """Return VALUE as plain JSON data (dates become ISO strings), or raise `bad-configuration`."""
    try:
        return json.loads(json.dumps(value, default=_json_default, sort_keys=True))
    except (TypeError, ValueError) as error:
        raise refusal("bad-configuration", f"the configuration cannot be stored as JSON: {error}") from None


def _json_default(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _activation_view(session: Session, row: tables.Activation) -> Activation:
    debits = session.execute(
        select(tables.LedgerEntry.reference, func.sum(tables.LedgerEntry.quantity))
        .where(tables.LedgerEntry.activation_id == row.id).group_by(tables.LedgerEntry.reference)
    ).all()
    return Activation(
        id=row.id, kind=row.kind, parent=row.parent_id, locker_id=row.locker_id,
        user=_emails(session, [row.user_id])[row.user_id], configuration=row.configuration,
        rules_version=row.rules_version, badges=tuple(row.badges), lines=tuple(row.lines),
        debits={reference: -int(total) for reference, total in sorted(debits)},
        activated_on=row.activated_on, term_start=row.term_start, created_at=row.created_at,
    )


def _activation_row(session: Session, locker: tables.Locker, activation_id: str) -> tables.Activation:
    key = voucher_codes.normalize_activation_id(activation_id)
    row = session.get(tables.Activation, key)
    if row is None:
        raise refusal("unknown-activation", f"no activation {key}",
                      "list your activations with: companion locker show")
    if row.locker_id not in _family(session, locker.id):
        raise refusal("forbidden", f"activation {key} belongs to another locker",
                      "you can only use activations of your own locker")
    return row


def activate(store: Store, user_email: str, configuration: dict, rules_version: str, requirements,
             matching: Mapping[str, Sequence] | None = None, on: date | None = None, kind: str = "activation",
             parent: str | None = None, backdated: tuple[str, dict] | None = None) -> Activation | Shortfall:
    """Debit the user's locker for a configuration and record its activation, or return the shortfall.

    One transaction locks the locker, re-reads its balances, checks coverage and, only when every line is
    covered, writes the activation and its debits. The user's stored badges go with the record. An
    amendment keeps its parent's term start; an activation or a renewal starts a term on ON. BACKDATED,
    an operator and what they dated otherwise than the server's date, goes to the journal with it.
    """
    if kind not in KINDS:
        raise refusal("bad-kind", f"'{kind}' is not a kind of activation", f"use one of {', '.join(KINDS)}")
    if kind == "activation" and parent is not None:
        raise refusal("bad-parent", "a first activation has no parent", "use kind amendment or renewal")
    if kind != "activation" and parent is None:
        raise refusal("missing-parent", f"an {kind} needs the Activation ID it changes")
    on = on or utcnow().date()
    if not isinstance(on, date) or isinstance(on, datetime):
        raise refusal("bad-date", f"activation date must be a date, got {on!r}")
    if not FIRST_DAY <= on <= LAST_DAY:  # its term, amendments and renewals must stay dates
        raise refusal("bad-date", f"activation date {on} is outside {FIRST_DAY} .. {LAST_DAY}",
                      "activate on a date such as 2025-06-01")
    if not str(rules_version or "").strip():
        raise refusal("bad-rules-version", "the rules version of the configuration is required")
    stored_configuration = _jsonable(configuration)
    lines = [as_requirement(item) for item in requirements]
    with store.transaction() as session:
        user = _user_row(session, user_email, lock=True)
        locker = _locker_row(session, user, lock=True)
        parent_row = _activation_row(session, locker, parent) if parent is not None else None
        if parent_row is not None:
            _refuse_if_changed(session, parent_row, kind)  # under the locker's lock: two requests cannot both pass
        before = _balances(session, locker.id)
        coverage = cover(lines, before, matching)
        if not coverage.covered:
            return Shortfall(coverage=coverage, balances=before)
        activation_id = voucher_codes.new_activation_id()
        while session.get(tables.Activation, activation_id) is not None:
            activation_id = voucher_codes.new_activation_id()
        now = utcnow()
        row = tables.Activation(
            id=activation_id, locker_id=locker.id, user_id=user.id, kind=kind,
            parent_id=parent_row.id if parent_row else None, configuration=stored_configuration,
            rules_version=str(rules_version), badges=list(user.badges),
            lines=[line.to_json() for line in coverage.lines], activated_on=on,
            term_start=parent_row.term_start if kind == "amendment" else on, created_at=now,
        )
        session.add(row)
        session.flush()
        debits = coverage.debits
        session.add_all(tables.LedgerEntry(locker_id=locker.id, reference=reference, quantity=-count,
                                       kind="activation", activation_id=activation_id, at=now,
                                       by_user_id=user.id)
                        for reference, count in debits.items() if count)
        after = dict(before)
        for reference, count in debits.items():
            after[reference] -= count
        after = {reference: quantity for reference, quantity in after.items() if quantity}
        _audit(session, locker.id, user, "activation",
               {"activation": activation_id, "kind": kind, "parent": row.parent_id, "debits": debits,
                "rules_version": row.rules_version, "before": before, "after": after})
        if backdated is not None:
            operator, details = backdated
            journal.record(session, operator, "backdated-activation", user.email,
                           {**details, "activation": activation_id, "kind": kind, "debits": debits})
        session.flush()
        return Activation(id=activation_id, kind=kind, parent=row.parent_id, locker_id=locker.id, user=user.email,
                          configuration=stored_configuration, rules_version=row.rules_version,
                          badges=tuple(user.badges), lines=tuple(row.lines), debits=debits, activated_on=on,
                          term_start=row.term_start, created_at=now)


def _refuse_if_changed(session, parent: tables.Activation, kind: str) -> None:
    """Refuse to change an activation already amended or renewed: it would charge the same change twice."""
    latest = parent
    while (child := session.scalar(select(tables.Activation).where(tables.Activation.parent_id == latest.id)
                                   .order_by(tables.Activation.created_at).limit(1))) is not None:
        latest = child
    if latest is not parent:
        verb = "amend" if kind == "amendment" else "renew"
        raise refusal("already-changed",
                      f"{parent.id} was changed already (latest: {latest.kind} {latest.id} of {latest.activated_on})",
                      f"{verb} {latest.id}, the subscription as it stands now")


def get_activation(store: Store, user_email: str, activation_id: str) -> Activation:
    """Return an activation of the acting user's locker."""
    with store.transaction() as session:
        user = _user_row(session, user_email, lock=True)
        locker = _locker_row(session, user)
        return _activation_view(session, _activation_row(session, locker, activation_id))


def get_activation_to_change(store: Store, user_email: str, activation_id: str, kind: str) -> Activation:
    """Return an activation of the acting user's locker that is the latest of its chain, ready to amend or renew."""
    with store.transaction() as session:
        user = _user_row(session, user_email, lock=True)
        locker = _locker_row(session, user)
        row = _activation_row(session, locker, activation_id)
        _refuse_if_changed(session, row, kind)
        return _activation_view(session, row)


def list_activations(store: Store, user_email: str) -> list[Activation]:
    """Return the activations of the acting user's locker, oldest first."""
    with store.transaction() as session:
        user = _user_row(session, user_email, lock=True)
        locker = _locker_row(session, user)
        rows = session.scalars(select(tables.Activation).where(tables.Activation.locker_id.in_(_family(session, locker.id)))
                               .order_by(tables.Activation.created_at, tables.Activation.id))
        return [_activation_view(session, row) for row in rows]


# --- sharing -----------------------------------------------------------------------------------------


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
    return Invitation(id=row.id, locker_id=row.locker_id, inviter=_emails(session, [row.inviter_id])[row.inviter_id],
                      invitee=row.invitee_email, created_at=row.created_at, accepted_at=row.accepted_at,
                      warnings=tuple(warnings))


def invite(store: Store, owner_email: str, invitee_email: str) -> Invitation:
    """Invite a user to share the owner's locker; warn when the invitee is outside the owner's domain."""
    invitee = normalize_email(invitee_email)
    with store.transaction() as session:
        owner = _user_row(session, owner_email, lock=True)
        locker = _locker_row(session, owner, lock=True)
        if locker.owner_id != owner.id:
            owner_of = _emails(session, [locker.owner_id])[locker.owner_id]
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
        current = _balances(session, locker.id)
        _audit(session, locker.id, owner, "invitation",
               {"invitation": row.id, "invitee": invitee, "warnings": warnings, "before": current,
                "after": current})
        return _invitation_view(session, row, warnings)


def pending_invitations(store: Store, user_email: str) -> list[Invitation]:
    """Return the invitations waiting for the acting user's acceptance."""
    with store.transaction() as session:
        user = _user_row(session, user_email)
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
        user = _user_row(session, invitee_email, lock=True)
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
            live = _live_locker(session, target)
            owner_of = _emails(session, [live.owner_id])[live.owner_id]
            raise refusal("invitation-expired",
                          f"invitation {invitation.id} is for locker {target.id}, which has since been merged "
                          f"into locker {live.id}", f"ask {owner_of}, the owner of locker {live.id}, to invite you")
        now = utcnow()
        before = _balances(session, target.id)
        merged: dict[str, int] = {}
        if own_id is None:
            session.add(tables.Membership(user_id=user.id, locker_id=target.id, joined_at=now))
        else:
            own = locked[own_id]
            merged = _balances(session, own.id)
            for reference, quantity in merged.items():
                session.add(tables.LedgerEntry(locker_id=own.id, reference=reference, quantity=-quantity, kind="merge",
                                           at=now, by_user_id=user.id))
                session.add(tables.LedgerEntry(locker_id=target.id, reference=reference, quantity=quantity,
                                           kind="merge", at=now, by_user_id=user.id))
            own.merged_into = target.id
            membership = session.get(tables.Membership, user.id, populate_existing=True)
            membership.locker_id = target.id
            membership.joined_at = now
            _audit(session, own.id, user, "merge",
                   {"invitation": invitation.id, "into": target.id, "moved": merged, "before": merged,
                    "after": {}})
        invitation.accepted_at = now
        after = dict(before)
        for reference, quantity in merged.items():
            after[reference] = after.get(reference, 0) + quantity
        after = dict(sorted(after.items()))
        _audit(session, target.id, user, "acceptance",
               {"invitation": invitation.id, "member": user.email, "merged_from": own_id, "merged": merged,
                "before": before, "after": after})
        session.flush()
    return Acceptance(invitation=_invitation_view_after(store, invitation.id), locker=show_locker(store, invitee_email),
                      merged=merged)


def _invitation_view_after(store: Store, invitation_id: str) -> Invitation:
    with store.transaction() as session:
        return _invitation_view(session, session.get(tables.Invitation, invitation_id))


# --- audit -------------------------------------------------------------------------------------------


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
        user = _user_row(session, user_email, lock=True)
        locker = _locker_row(session, user)
        _check_access(session, locker, locker_id)
        rows = list(session.scalars(select(tables.AuditEvent)
                                    .where(tables.AuditEvent.locker_id.in_(_family(session, locker.id)))
                                    .order_by(tables.AuditEvent.id)))
        emails = _emails(session, [row.actor_id for row in rows])
        return [AuditEvent(id=row.id, locker_id=row.locker_id, actor=emails[row.actor_id], action=row.action,
                           at=row.at, details=row.details) for row in rows]
