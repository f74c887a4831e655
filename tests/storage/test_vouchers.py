"""Vouchers: issued codes redeem once into a locker; the ledger adds them up and is append-only."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from engine import locker
from engine.locker import voucher_codes
from engine.problem import CompanionError


def problem(call, *args, **kwargs):
    with pytest.raises(CompanionError) as caught:
        call(*args, **kwargs)
    return caught.value.problems[0]


def test_redeem_credits_the_locker_and_same_references_add_up(store, make_user, tag):
    ann = make_user("ann")
    first, second = locker.issue_vouchers(store, f"EPO-{tag}", 2, count=2)
    other, = locker.issue_vouchers(store, f"PME-{tag}", 5)
    assert locker.redeem(store, ann, first).balance == 2
    done = locker.redeem(store, ann, second.lower().replace("-", " "))
    assert (done.reference, done.quantity, done.balance) == (f"EPO-{tag}", 2, 4)
    locker.redeem(store, ann, other)
    assert locker.balances(store, ann) == {f"EPO-{tag}": 4, f"PME-{tag}": 5}


def test_a_code_redeems_once_and_says_when_in_the_same_locker(store, make_user, tag):
    ann, eve = make_user("ann"), make_user("eve", domain=f"elsewhere-{tag}.example")
    code, = locker.issue_vouchers(store, f"EPO-{tag}", 3)
    first = locker.redeem(store, ann, code)
    again = problem(locker.redeem, store, ann, code)
    assert again.code == "already-redeemed"
    assert f"locker {first.locker_id}" in again.message and ann in again.message
    assert f"{first.at:%Y-%m-%d}" in again.message
    stranger = problem(locker.redeem, store, eve, code)
    assert stranger.code == "already-redeemed"
    assert ann not in stranger.message + stranger.hint
    assert f"locker {first.locker_id}" not in stranger.message + stranger.hint
    assert locker.balances(store, ann) == {f"EPO-{tag}": 3}
    assert locker.balances(store, eve) == {}


def test_mistyped_code_is_malformed_and_a_well_formed_stranger_is_unknown(store, make_user, tag):
    ann = make_user("ann")
    code, = locker.issue_vouchers(store, f"EPO-{tag}", 1)
    symbols = code.replace("-", "")
    typo = symbols[:3] + ("2" if symbols[3] != "2" else "3") + symbols[4:]
    assert problem(locker.redeem, store, ann, typo).code == "malformed-code"
    assert problem(locker.redeem, store, ann, code[:-2]).code == "malformed-code"
    assert problem(locker.redeem, store, ann, voucher_codes.new_voucher_code()).code == "unknown-code"
    assert locker.balances(store, ann) == {}


@pytest.mark.parametrize("reference, quantity, count, code", [
    ("", 1, 1, "bad-reference"), ("EPO SUB", 1, 1, "bad-reference"), ("EPO", 0, 1, "bad-quantity"),
    ("EPO", 1, 0, "bad-count"), ("EPO", 1, 10_001, "bad-count"), ("EPO", True, 1, "bad-quantity"),
])
def test_issue_refuses_bad_input(store, reference, quantity, count, code):
    assert problem(locker.issue_vouchers, store, reference, quantity, count).code == code


@pytest.mark.parametrize("statement", [
    "UPDATE ledger SET quantity = quantity + 100",
    "DELETE FROM ledger",
    "UPDATE vouchers SET quantity = 1000",
    "DELETE FROM redemptions",
    "UPDATE audit_events SET action = 'nothing'",
])
def test_ledger_vouchers_redemptions_and_audit_refuse_update_and_delete(store, make_user, fund, tag, statement):
    fund(make_user("ann"), f"EPO-{tag}", 2)
    with pytest.raises(DBAPIError, match="append-only"):
        with store.engine.begin() as connection:
            connection.execute(text(statement))
