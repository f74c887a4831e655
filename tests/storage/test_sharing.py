"""Sharing: invite, accept, merge into one pool; only the owner invites; nobody sees another locker."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from engine import locker
from engine.services.coverage import Requirement
from engine.problem import CompanionError


def refused(call, *args, **kwargs):
    with pytest.raises(CompanionError) as caught:
        call(*args, **kwargs)
    return caught.value.problems[0]


def test_invite_accept_merges_the_invitees_vouchers(store, make_user, fund, tag):
    ann, bob = make_user("ann"), make_user("bob")
    fund(ann, f"EPO-{tag}", 2)
    fund(bob, f"EPO-{tag}", 3)
    fund(bob, f"PME-{tag}", 1)
    bob_locker = locker.show_locker(store, bob).id
    invitation = locker.invite(store, ann, bob)
    assert invitation.warnings == ()
    assert [item.id for item in locker.pending_invitations(store, bob)] == [invitation.id]
    done = locker.accept(store, bob)
    assert done.merged == {f"EPO-{tag}": 3, f"PME-{tag}": 1}
    shared = locker.show_locker(store, ann)
    assert shared.shared and shared.members == tuple(sorted([ann, bob])) and shared.owner == ann
    assert locker.show_locker(store, bob) == shared
    assert shared.balances == {f"EPO-{tag}": 5, f"PME-{tag}": 1}
    assert shared.id != bob_locker
    # Both draw from one pool.
    locker.activate(store, bob, {}, "v1", [Requirement(f"EPO-{tag}", 4)], {}, on=date(2025, 1, 1))
    assert locker.balances(store, ann) == {f"EPO-{tag}": 1, f"PME-{tag}": 1}
    # Vouchers redeemed into the old locker are still told apart from strangers'.
    assert refused(locker.accept, store, bob).code == "no-invitation"


def test_invitation_outside_the_domain_warns(store, make_user, tag):
    ann, zed = make_user("ann"), make_user("zed", domain=f"other-{tag}.example")
    invitation = locker.invite(store, ann, zed)
    assert invitation.warnings and "outside" in invitation.warnings[0]
    assert locker.accept(store, zed, invitation.id.lower()).locker.owner == ann


def test_only_the_original_inviter_invites(store, make_user, tag):
    ann, bob, cat = make_user("ann"), make_user("bob"), make_user("cat")
    locker.invite(store, ann, bob)
    locker.accept(store, bob)
    problem = refused(locker.invite, store, bob, cat)
    assert problem.code == "not-owner" and ann in problem.message
    assert refused(locker.invite, store, ann, bob).code == "already-member"
    assert refused(locker.invite, store, ann, ann).code == "self-invitation"


def test_accept_by_id_and_ambiguity(store, make_user, tag):
    ann, bob, cat = make_user("ann"), make_user("bob"), make_user("cat")
    first, second = locker.invite(store, ann, cat), locker.invite(store, bob, cat)
    assert refused(locker.accept, store, cat).code == "ambiguous-invitation"
    assert refused(locker.accept, store, cat, "INV-2222-2222-2222").code in ("unknown-invitation",
                                                                          "malformed-invitation-id")
    locker.accept(store, cat, second.id)
    assert locker.show_locker(store, cat).owner == bob
    assert refused(locker.accept, store, cat, second.id).code == "already-accepted"
    # cat's locker is now bob's shared locker: merging it again into ann's is refused.
    assert refused(locker.accept, store, cat, first.id).code == "already-shared"


def test_nobody_reaches_another_locker(store, make_user, fund, tag):
    ann, eve = make_user("ann"), make_user("eve")
    fund(ann, f"EPO-{tag}", 1)
    theirs = locker.show_locker(store, ann).id
    mine = locker.show_locker(store, eve).id
    assert refused(locker.show_locker, store, eve, theirs).code == "forbidden"
    assert refused(locker.audit, store, eve, theirs).code == "forbidden"
    assert locker.show_locker(store, eve, mine).id == mine
    assert refused(locker.accept, store, eve).code == "no-invitation"
    invitation = locker.invite(store, ann, make_user("bob"))
    assert refused(locker.accept, store, eve, invitation.id).code == "unknown-invitation"
    assert not hasattr(locker, "transfer") and not hasattr(locker, "move")


def test_audit_adds_up(store, make_user, fund, tag):
    ann, bob = make_user("ann"), make_user("bob")
    fund(ann, f"EPO-{tag}", 4, count=2)
    fund(bob, f"EPO-{tag}", 1)
    locker.activate(store, ann, {}, "v1", [Requirement(f"EPO-{tag}", 3)], {}, on=date(2025, 1, 1))
    locker.invite(store, ann, bob)
    locker.accept(store, bob)
    locker.activate(store, bob, {}, "v1", [Requirement(f"EPO-{tag}", 2)], {}, on=date(2025, 2, 1))
    events = locker.audit(store, bob)
    assert Counter(event.action for event in events) == Counter(
        redemption=3, activation=2, invitation=1, merge=1, acceptance=1)
    assert {event.actor for event in events} == {ann, bob}
    total = Counter()
    for event in events:
        before, after = Counter(event.details["before"]), Counter(event.details["after"])
        total.update(after)
        total.subtract(before)
        assert all(quantity >= 0 for quantity in after.values())
    assert +total == Counter(locker.balances(store, ann)) == Counter({f"EPO-{tag}": 4})
    assert locker.audit(store, ann) == events


def test_invitation_to_a_merged_locker_names_whom_to_ask(store, make_user, fund, tag):
    ann, bob, cat = make_user("ann"), make_user("bob"), make_user("cat")
    fund(cat, f"EPO-{tag}", 1)
    invitation = locker.invite(store, bob, cat)
    locker.invite(store, ann, bob)
    locker.accept(store, bob)  # bob's locker, the one cat was invited to, is merged into ann's
    problem = refused(locker.accept, store, cat, invitation.id)
    assert problem.code == "invitation-expired"
    assert "merged" in problem.message and ann in problem.hint
    assert locker.show_locker(store, cat).balances == {f"EPO-{tag}": 1}
