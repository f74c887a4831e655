"""Concurrent accepts: whatever commits first, every user ends in exactly one live locker with their vouchers.

a invites b and b invites c; b accepts a's invitation (merging b's locker into a's) at the same moment as c
accepts b's (joining b's locker). Only one of the two can stand: if c joined first, b's locker is shared and
b is refused `already-shared`; if b merged first, b's locker is gone and c is refused `invitation-expired`.
Fresh users every round; the round's findings are collected so that the failure rate shows.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date

from sqlalchemy import func, select

from engine import locker
from engine.locker import tables
from engine.locker import Acceptance, Activation
from engine.services.coverage import Requirement
from engine.problem import CompanionError

ROUNDS = 50
# Distinct powers of two: any sum of them tells which users' units it holds.
UNITS = {"a": 1, "b": 2, "c": 4}
REFUSALS = {"already-shared", "invitation-expired"}


def _add_funded_user(store, email: str, reference: str, quantity: int) -> None:
    locker.add_user(store, email, company="Race & co", badges=["power-management"], country="US")
    for code in locker.issue_vouchers(store, reference, quantity):
        locker.redeem(store, email, code)


def _accept_at_the_barrier(store, barrier: threading.Barrier, invitee: str, invitation_id: str):
    barrier.wait()
    try:
        return locker.accept(store, invitee, invitation_id)
    except CompanionError as error:
        return error


def _memberships(store, emails) -> dict[str, list[tuple[int, int | None]]]:
    """Return, per email, the (locker id, merged_into) of every locker the user is a member of."""
    with store.transaction() as session:
        rows = session.execute(
            select(tables.User.email, tables.Locker.id, tables.Locker.merged_into)
            .join(tables.Membership, tables.Membership.user_id == tables.User.id)
            .join(tables.Locker, tables.Locker.id == tables.Membership.locker_id)
            .where(tables.User.email.in_(emails))).all()
    found: dict[str, list[tuple[int, int | None]]] = {email: [] for email in emails}
    for email, locker_id, merged_into in rows:
        found[email].append((locker_id, merged_into))
    return found


def _ledger_sums(store, references) -> dict[tuple[int, bool, str], int]:
    """Return every locker's balance (merged ones too) per reference, keyed (locker id, merged away, reference)."""
    with store.transaction() as session:
        rows = session.execute(
            select(tables.LedgerEntry.locker_id, tables.Locker.merged_into, tables.LedgerEntry.reference,
                   func.sum(tables.LedgerEntry.quantity))
            .join(tables.Locker, tables.Locker.id == tables.LedgerEntry.locker_id)
            .where(tables.LedgerEntry.reference.in_(references))
            .group_by(tables.LedgerEntry.locker_id, tables.Locker.merged_into, tables.LedgerEntry.reference)).all()
    return {(locker_id, merged_into is not None, reference): int(total)
            for locker_id, merged_into, reference, total in rows}


def _play_round(store, pool, barrier, round_tag: str) -> list[str]:
    """Run one race with fresh users; return what went wrong (nothing when all is well)."""
    users = {name: f"{name}@{round_tag}.example" for name in UNITS}
    references = {name: f"{name.upper()}-{round_tag}" for name in UNITS}
    for name in UNITS:
        _add_funded_user(store, users[name], references[name], UNITS[name])
    a_invites_b = locker.invite(store, users["a"], users["b"])
    b_invites_c = locker.invite(store, users["b"], users["c"])
    outcomes = list(pool.map(_accept_at_the_barrier, [store, store], [barrier, barrier],
                             [users["b"], users["c"]], [a_invites_b.id, b_invites_c.id]))

    found, views = [], {}
    for name in UNITS:
        try:
            views[name] = locker.show_locker(store, users[name])
        except CompanionError as error:
            found.append(f"show_locker for {name}: {error.problems[0].code}")
    for (invitee, inviter), outcome in zip([("b", "a"), ("c", "b")], outcomes):
        if isinstance(outcome, Acceptance):
            if invitee in views and users[inviter] not in views[invitee].members:
                found.append(f"{invitee} accepted {inviter}'s invitation but shares a locker with "
                             f"{views[invitee].members}")
        elif outcome.problems[0].code not in REFUSALS:
            found.append(f"{invitee}'s accept was refused {outcome.problems[0].code}: {outcome.problems[0].message}")
    if all(isinstance(outcome, Acceptance) for outcome in outcomes):
        found.append("both accepts succeeded")

    for name, lockers in _memberships(store, list(users.values())).items():
        live = [locker_id for locker_id, merged_into in lockers if merged_into is None]
        if len(lockers) != 1 or len(live) != 1:
            found.append(f"{name} is a member of {lockers} (locker id, merged into): not of one live locker")

    for name, view in views.items():
        if view.balances.get(references[name]) != UNITS[name]:
            found.append(f"{name}'s {UNITS[name]} x {references[name]} are not in {name}'s locker: {view.balances}")

    sums = _ledger_sums(store, list(references.values()))
    negative = {key: total for key, total in sums.items() if total < 0}
    if negative:
        found.append(f"negative balances (locker, merged, reference): {negative}")
    left_behind = {key: total for key, total in sums.items() if key[1] and total}
    if left_behind:
        found.append(f"units left in merged lockers (locker, merged, reference): {left_behind}")

    redeemed = activated = 0
    for name in UNITS:  # every user can still redeem and activate (no `busy`)
        try:
            locker.redeem(store, users[name], locker.issue_vouchers(store, references[name], 1)[0])
            redeemed += 1
            result = locker.activate(store, users[name], {"round": round_tag}, "race",
                                     [Requirement(references[name], 1)], {}, on=date(2025, 1, 1))
        except CompanionError as error:
            found.append(f"{name} cannot redeem or activate: {error.problems[0].code}")
            continue
        if isinstance(result, Activation):
            activated += 1
        else:
            found.append(f"{name}'s activation of 1 x {references[name]} fell short: {result.missing}")

    total = sum(_ledger_sums(store, list(references.values())).values())
    expected = sum(UNITS.values()) + redeemed - activated
    if total != expected:
        found.append(f"{total} units in the ledger, expected {expected} (redeemed minus activated)")
    return found


def test_concurrent_accepts_leave_every_user_in_one_live_locker(store, tag):
    """b merges into a's locker while c joins b's: run it ROUNDS times; no round may strand anybody."""
    barrier = threading.Barrier(2)
    failures = []
    with ThreadPoolExecutor(2) as pool:
        for number in range(ROUNDS):
            found = _play_round(store, pool, barrier, f"{tag}-{number}")
            if found:
                failures.append(f"round {number}: " + "; ".join(found))
    assert not failures, f"{len(failures)} of {ROUNDS} rounds failed:\n" + "\n".join(failures[:3])
