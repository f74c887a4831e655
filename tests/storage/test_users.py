"""Users: unique emails regardless of case, validated fields, one locker each on first use."""

from __future__ import annotations

import pytest

from engine import locker
from engine.problem import CompanionError


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(CompanionError) as caught:
        call(*args, **kwargs)
    return caught.value.problems[0].code


def test_add_get_list_set(store, tag):
    email = f"Ann@{tag}.Example"
    added = locker.add_user(store, email, company="Acme", badges="power-management, power-automation",
                            country="us")
    assert added.email == f"ann@{tag}.example"
    assert added.badges == ("power-management", "power-automation")
    assert added.country == "US" and added.purchasing_account is None
    assert locker.get_user(store, email.upper()) == added
    assert added in locker.list_users(store)
    changed = locker.set_user(store, email, badges=["building-automation"], purchasing_account="PA-1")
    assert changed.badges == ("building-automation",) and changed.purchasing_account == "PA-1"
    assert changed.company == "Acme"
    assert locker.set_user(store, email, purchasing_account="").purchasing_account is None


def test_duplicate_email_in_another_case_is_refused(store, tag):
    locker.add_user(store, f"bob@{tag}.example", company="B", badges=[], country="FR")
    assert refused(locker.add_user, store, f"BOB@{tag}.EXAMPLE", company="B", badges=[], country="FR") \
        == "duplicate-user"


@pytest.mark.parametrize("email", ["bob", "bob@", "@x.example", "bob@x", "b b@x.example", "bob@-x.example"])
def test_malformed_email_is_refused(store, email):
    assert refused(locker.add_user, store, email, company="B", badges=[], country="FR") == "malformed-email"


@pytest.mark.parametrize("country", ["USA", "U", "1A", ""])
def test_country_must_be_alpha_2(store, tag, country):
    assert refused(locker.add_user, store, f"c@{tag}.example", company="C", badges=[], country=country) \
        == "bad-country"


def test_bad_badge_and_unknown_user(store, tag):
    assert refused(locker.add_user, store, f"d@{tag}.example", company="D", badges=["Power Management"],
                   country="US") == "bad-badge"
    assert refused(locker.get_user, store, f"nobody@{tag}.example") == "unknown-user"
    assert refused(locker.set_user, store, f"nobody@{tag}.example", company="X") == "unknown-user"


def test_locker_is_created_on_first_use_and_is_one_per_user(store, make_user):
    ann = make_user("ann")
    first = locker.show_locker(store, ann)
    assert first.owner == ann and first.members == (ann,) and first.balances == {}
    assert locker.show_locker(store, ann).id == first.id
    assert locker.show_locker(store, make_user("bob")).id != first.id
