"""Activation: one transaction debits the locker and records the activation; a shortfall debits nothing."""

from __future__ import annotations

import re
from datetime import date

import pytest
from sqlalchemy import func, select

from engine import locker
from engine.locker import tables
from engine.locker import Activation, Shortfall
from engine.services.coverage import Requirement, VoucherUnit
from engine.problem import CompanionError

CONFIGURATION = {"product": "epo", "license": "subscription", "term_months": 36, "tier": "advanced",
                 "devices": 150, "addons": [{"id": "insulation-monitoring", "quantity": 1}]}


def requirements(tag):
    return [Requirement(f"EPO-ADV-{tag}", 1, "EPO Advanced, 36 months"),
            Requirement(f"EPO-DEV-{tag}", 150, "EPO device licences"),
            Requirement(f"EPO-IM-{tag}", 1, "Insulation Monitoring")]


def matching(tag):
    return {f"EPO-DEV-{tag}": [VoucherUnit(f"EPO-DEV100-{tag}", 100)]}


def refused(call, *args, **kwargs):
    with pytest.raises(CompanionError) as caught:
        call(*args, **kwargs)
    return caught.value.problems[0]


def ledger_rows(store, email):
    view = locker.show_locker(store, email)
    with store.transaction() as session:
        return session.scalar(select(func.count()).select_from(tables.LedgerEntry)
                              .where(tables.LedgerEntry.locker_id == view.id))


def test_activation_debits_and_records_everything(store, make_user, fund, tag):
    ann = make_user("ann", badges=["power-management"])
    fund(ann, f"EPO-ADV-{tag}", 1)
    fund(ann, f"EPO-DEV100-{tag}", 1, count=3)
    fund(ann, f"EPO-IM-{tag}", 2)
    result = locker.activate(store, ann, {**CONFIGURATION, "badges": ["building-automation"]}, "rules-abc",
                             requirements(tag), matching(tag), on=date(2025, 6, 1))
    assert isinstance(result, Activation)
    assert re.fullmatch(r"ACT(-[2-9A-Z]{4}){4}", result.id)
    assert result.debits == {f"EPO-ADV-{tag}": 1, f"EPO-DEV100-{tag}": 2, f"EPO-IM-{tag}": 1}
    assert result.badges == ("power-management",)  # the stored badges, never the request's
    assert result.term_start == result.activated_on == date(2025, 6, 1)
    assert locker.balances(store, ann) == {f"EPO-DEV100-{tag}": 1, f"EPO-IM-{tag}": 1}
    stored = locker.get_activation(store, ann, result.id.lower())
    assert stored.configuration["devices"] == 150 and stored.rules_version == "rules-abc"
    assert stored.debits == result.debits and [line["reference"] for line in stored.lines] == \
        [line.reference for line in requirements(tag)]
    assert [item["id"] for item in locker.show_locker(store, ann).activations] == [result.id]


def test_shortfall_debits_nothing_and_names_reference_and_quantity(store, make_user, fund, tag):
    ann = make_user("ann")
    fund(ann, f"EPO-ADV-{tag}", 1)
    fund(ann, f"EPO-DEV100-{tag}", 1)
    fund(ann, f"EPO-IM-{tag}", 1)
    rows = ledger_rows(store, ann)
    result = locker.activate(store, ann, CONFIGURATION, "rules-abc", requirements(tag), matching(tag),
                             on=date(2025, 6, 1))
    assert isinstance(result, Shortfall)
    assert result.missing == {f"EPO-DEV100-{tag}": 1}
    short = [line for line in result.coverage.lines if not line.covered]
    assert [(line.reference, line.short.voucher_reference, line.short.quantity) for line in short] == \
        [(f"EPO-DEV-{tag}", f"EPO-DEV100-{tag}", 1)]
    assert "buy 1 more voucher of " + f"EPO-DEV100-{tag}" in short[0].advice
    assert [problem.code for problem in result.problems()] == ["shortfall"]
    assert ledger_rows(store, ann) == rows
    assert locker.balances(store, ann) == {f"EPO-ADV-{tag}": 1, f"EPO-DEV100-{tag}": 1, f"EPO-IM-{tag}": 1}
    assert locker.show_locker(store, ann).activations == ()
    assert [event.action for event in locker.audit(store, ann)].count("activation") == 0


def test_amendment_keeps_the_term_and_renewal_starts_a_new_one(store, make_user, fund, tag):
    ann = make_user("ann")
    fund(ann, f"EPO-ESS-{tag}", 1)
    fund(ann, f"EPO-UPG-{tag}", 1)
    fund(ann, f"EPO-REN-{tag}", 1)
    first = locker.activate(store, ann, {"tier": "essential"}, "v1", [Requirement(f"EPO-ESS-{tag}", 1)], {},
                            on=date(2025, 6, 1))
    amended = locker.activate(store, ann, {"tier": "advanced"}, "v1", [Requirement(f"EPO-UPG-{tag}", 1)], {},
                              on=date(2025, 9, 1), kind="amendment", parent=first.id)
    assert (amended.parent, amended.term_start, amended.activated_on) == (first.id, date(2025, 6, 1),
                                                                         date(2025, 9, 1))
    renewed = locker.activate(store, ann, {"tier": "advanced"}, "v1", [Requirement(f"EPO-REN-{tag}", 1)], {},
                              on=date(2028, 6, 1), kind="renewal", parent=amended.id)
    assert renewed.term_start == date(2028, 6, 1)
    assert locker.balances(store, ann) == {}


def test_bad_kinds_and_parents_are_refused(store, make_user, fund, tag):
    ann, eve = make_user("ann"), make_user("eve")
    fund(eve, f"EPO-{tag}", 1)
    theirs = locker.activate(store, eve, {}, "v1", [Requirement(f"EPO-{tag}", 1)], {}, on=date(2025, 1, 1))
    assert refused(locker.activate, store, ann, {}, "v1", [], {}, kind="upgrade").code == "bad-kind"
    assert refused(locker.activate, store, ann, {}, "v1", [], {}, kind="amendment").code == "missing-parent"
    assert refused(locker.activate, store, ann, {}, "v1", [], {}, kind="renewal",
                   parent=theirs.id).code == "forbidden"
    assert refused(locker.get_activation, store, ann, theirs.id).code == "forbidden"
    assert refused(locker.activate, store, ann, {"x": object()}, "v1", []).code == "bad-configuration"
