"""The journal: every state change outside the lockers is recorded, append-only, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from engine.locker import accounts, journal
from engine import locker


def actions(store, about):
    return [(entry.actor, entry.action, entry.subject) for entry in journal.entries(store, about)]


def test_user_changes_are_journaled_with_before_and_after(store, tag):
    email = f"joe@{tag}.example"
    locker.add_user(store, email, company="Joe & co", badges=["power-management"], country="US", actor="cli:ops")
    locker.set_user(store, email, country="FR", actor="cli:ops")
    entries = journal.entries(store, email)
    assert [(entry.actor, entry.action) for entry in entries] == [("cli:ops", "user-added"),
                                                                  ("cli:ops", "user-changed")]
    assert entries[1].details["before"]["country"] == "US" and entries[1].details["after"]["country"] == "FR"


def test_issued_vouchers_are_journaled_without_their_codes(store, tag):
    reference = f"EPO-{tag.upper()}"
    codes = locker.issue_vouchers(store, reference, 3, count=2, actor="cli:vendor")
    [entry] = journal.entries(store, reference)
    assert (entry.actor, entry.action, entry.details["quantity"], entry.details["count"]) == (
        "cli:vendor", "vouchers-issued", 3, 2)
    recorded = " ".join(entry.details["codes"])
    assert all(code not in recorded and code.replace("-", "") not in recorded for code in codes)


def test_passwords_roles_and_projects_are_journaled(store, make_user):
    email = make_user("pat")
    accounts.set_password(store, email, "a long passphrase", actor="cli:ops")
    accounts.set_role(store, email, "product-manager", actor="cli:ops")
    project = accounts.save_project(store, email, "Wing B", {"product": "epo"})
    accounts.copy_project(store, email, project.id)
    accounts.delete_project(store, email, project.id)
    assert [action for _, action, _ in actions(store, email)] == [
        "user-added", "password-set", "role-set", "project-saved", "project-saved", "project-deleted"]
    assert all("passphrase" not in str(entry.details) for entry in journal.entries(store, email))
    assert ("pat" in actions(store, email)[-1][0]) and actions(store, email)[-1][2] == email


def test_the_journal_refuses_update_and_delete(store, make_user):
    make_user("ann")
    for statement in ("UPDATE journal SET action = 'nothing'", "DELETE FROM journal"):
        with pytest.raises(DBAPIError, match="append-only"):
            with store.engine.begin() as connection:
                connection.execute(text(statement))
