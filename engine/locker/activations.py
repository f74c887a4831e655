"""Activations: a configuration debited from a locker under an Activation ID, or the shortfall; amendments and renewals."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.catalogue.model import FIRST_DAY, LAST_DAY
from engine.locker import journal, tables, voucher_codes
from engine.locker.db import Store
from engine.locker.lockers import balances_of, emails_of, family, locker_row, record_audit
from engine.locker.tables import utcnow
from engine.locker.users import user_row
from engine.problem import Problem, refusal
from engine.services.coverage import VoucherCoverage, as_requirement, cover

KINDS = ("activation", "amendment", "renewal")


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
                        message="short by " + " + ".join(f"{item.quantity} x {item.voucher_reference}"
                                                         for item in line.purchase)
                                + f" ({line.uncovered} of {line.units} units not covered)",
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
        user=emails_of(session, [row.user_id])[row.user_id], configuration=row.configuration,
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
    if row.locker_id not in family(session, locker.id):
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
        user = user_row(session, user_email, lock=True)
        locker = locker_row(session, user, lock=True)
        parent_row = _activation_row(session, locker, parent) if parent is not None else None
        if parent_row is not None:
            _refuse_if_changed(session, parent_row, kind)  # under the locker's lock: two requests cannot both pass
        before = balances_of(session, locker.id)
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
        record_audit(session, locker.id, user, "activation",
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
        user = user_row(session, user_email, lock=True)
        locker = locker_row(session, user)
        return _activation_view(session, _activation_row(session, locker, activation_id))


def get_activation_to_change(store: Store, user_email: str, activation_id: str, kind: str) -> Activation:
    """Return an activation of the acting user's locker that is the latest of its chain, ready to amend or renew."""
    with store.transaction() as session:
        user = user_row(session, user_email, lock=True)
        locker = locker_row(session, user)
        row = _activation_row(session, locker, activation_id)
        _refuse_if_changed(session, row, kind)
        return _activation_view(session, row)


def list_activations(store: Store, user_email: str) -> list[Activation]:
    """Return the activations of the acting user's locker, oldest first."""
    with store.transaction() as session:
        user = user_row(session, user_email, lock=True)
        locker = locker_row(session, user)
        rows = session.scalars(select(tables.Activation).where(tables.Activation.locker_id.in_(family(session, locker.id)))
                               .order_by(tables.Activation.created_at, tables.Activation.id))
        return [_activation_view(session, row) for row in rows]
