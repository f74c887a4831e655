"""Users left in a merged locker by the accept race (fixed in 851ac72) end up in the live locker it went into.

The race: c joined b's locker while b's accept, which had counted b's locker as not shared, merged it into a's.
b moved with the merge; c stayed a member of the merged locker: no balances, every redeem and activation `busy`.
Migration 0006 repairs the databases holding such members; until it has run (or should one appear again) the
engine moves a stranded user on their next action, and accept() never merges a merged locker a second time.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import select, update

from scratch_databases import create_database, drop_database
from engine.locker import journal
from engine import locker
from engine.locker import migrations
from engine.locker import connect, tables
from engine.locker import Activation
from engine.services.coverage import Requirement
from engine.problem import CompanionError
from engine.locker.db import open_store

# Distinct powers of two: any sum of them tells which users' units it holds.
UNITS = {"a": 1, "b": 2, "c": 4, "d": 8}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_url(request, tmp_path):
    """The URL of an empty database of this test alone, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'companion.sqlite3'}"
        return
    admin, base = request.getfixturevalue("postgres_admin")
    url = create_database(admin, base, prefix="companion_test_repair")
    yield url
    drop_database(admin, url)


class At0005:
    """Plain SQL on a database at revision 0005, writing the rows the engine of that revision wrote."""

    def __init__(self, connection, tag: str):
        self.connection = connection
        self.tag = tag
        self.tables = sa.MetaData()
        self.tables.reflect(connection)
        self.now = datetime.now(timezone.utc)
        if connection.dialect.name == "sqlite":
            self.now = self.now.replace(tzinfo=None)  # as engine.locker.tables.UTCDateTime stores it
        self.user_ids: dict[str, int] = {}
        self.locker_ids: dict[str, int] = {}  # each user's locker: the one they own
        self.member_of: dict[str, int] = {}  # where each user's membership points
        self.balances: dict[int, dict[str, int]] = {}

    def _insert(self, table: str, **values) -> int:
        table = self.tables.tables[table]
        return self.connection.scalar(table.insert().values(**values).returning(*table.primary_key.columns))

    def _audit(self, locker_id: int, name: str, action: str, details: dict, after: dict[str, int]) -> None:
        before = self.balances[locker_id]
        self.balances[locker_id] = dict(sorted((key, value) for key, value in after.items() if value))
        self._insert("audit_events", locker_id=locker_id, actor_id=self.user_ids[name], action=action, at=self.now,
                     details={**details, "before": before, "after": self.balances[locker_id]})

    def reference(self, name: str) -> str:
        """Return the reference of NAME's vouchers."""
        return f"{name.upper()}-{self.tag}"

    def email(self, name: str) -> str:
        """Return NAME's email."""
        return f"{name}@{self.tag}.example"

    def funded_user(self, name: str) -> None:
        """Add NAME with a locker of their own holding UNITS[NAME] of their reference."""
        self.user_ids[name] = self._insert("users", email=self.email(name), company=f"{name} & co",
                                           badges=["power-management"], country="US", created_at=self.now)
        locker_id = self._insert("lockers", owner_id=self.user_ids[name], created_at=self.now)
        self._insert("memberships", user_id=self.user_ids[name], locker_id=locker_id, joined_at=self.now)
        self.locker_ids[name] = self.member_of[name] = locker_id
        self.balances[locker_id] = {}
        reference, quantity = self.reference(name), UNITS[name]
        voucher_id = self._insert("vouchers", code=f"{self.tag}{name}".upper(), reference=reference,
                                  quantity=quantity, issued_at=self.now)
        self._insert("redemptions", voucher_id=voucher_id, locker_id=locker_id, user_id=self.user_ids[name],
                     at=self.now)
        self._insert("ledger", locker_id=locker_id, reference=reference, quantity=quantity, kind="redemption",
                     voucher_id=voucher_id, at=self.now, by_user_id=self.user_ids[name])
        self._audit(locker_id, name, "redemption", {"code": "...", "reference": reference, "quantity": quantity},
                    {reference: quantity})

    def accepts(self, invitee: str, inviter: str) -> None:
        """INVITEE accepts INVITER's invitation as accept() did: only the invitee's membership moves."""
        own, target = self.member_of[invitee], self.member_of[inviter]
        invitation = f"INV{self.tag}{invitee}{inviter}".upper()
        self._insert("invitations", id=invitation, locker_id=target, inviter_id=self.user_ids[inviter],
                     invitee_email=self.email(invitee), created_at=self.now, accepted_at=self.now)
        moved = self.balances[own]
        for reference, quantity in moved.items():
            for locker_id, signed in ((own, -quantity), (target, quantity)):
                self._insert("ledger", locker_id=locker_id, reference=reference, quantity=signed, kind="merge",
                             at=self.now, by_user_id=self.user_ids[invitee])
        lockers, memberships = self.tables.tables["lockers"], self.tables.tables["memberships"]
        self.connection.execute(update(lockers).where(lockers.c.id == own).values(merged_into=target))
        self.connection.execute(update(memberships).where(memberships.c.user_id == self.user_ids[invitee])
                                .values(locker_id=target, joined_at=self.now))
        self.member_of[invitee] = target
        self._audit(own, invitee, "merge", {"invitation": invitation, "into": target, "moved": moved}, {})
        after = dict(self.balances[target])
        for reference, quantity in moved.items():
            after[reference] = after.get(reference, 0) + quantity
        self._audit(target, invitee, "acceptance", {"invitation": invitation, "member": self.email(invitee),
                                                    "merged_from": own, "merged": moved}, after)


def build_at_0005(url: str, tag: str, *, stranded: bool) -> At0005:
    """Migrate URL to 0005 and write four funded users a, b, c, d into it.

    Stranded: the accept race twice over. d joined c's locker, then c joined b's, then b's locker was merged
    into a's: c is left in b's locker (merged into a's), d in c's (merged into b's, merged into a's); all units
    are in a's locker. Healthy: b joined a's locker and d joined c's.
    """
    migrations.upgrade(url, "0005_idempotency")
    engine = connect.build_engine(url)
    try:
        with engine.begin() as connection:
            rows = At0005(connection, tag)
            for name in UNITS:
                rows.funded_user(name)
            if stranded:
                rows.accepts("d", "c")
                rows.accepts("c", "b")
                rows.accepts("b", "a")
            else:
                rows.accepts("b", "a")
                rows.accepts("d", "c")
    finally:
        engine.dispose()
    return rows


def every_row(url: str) -> dict[str, list]:
    """Return every row of every table but alembic_version, in primary-key order."""
    engine = connect.build_engine(url)
    try:
        with engine.connect() as connection:
            tables = sa.MetaData()
            tables.reflect(connection)
            return {name: [tuple(row) for row in connection.execute(
                        select(table).order_by(*table.primary_key.columns))]
                    for name, table in tables.tables.items() if name != "alembic_version"}
    finally:
        engine.dispose()


def assert_each_lockers_audit_chains(events) -> None:
    """Each locker's events chain: every event's balances before are those after the locker's previous event."""
    after: dict[int, dict] = {}
    for event in events:
        assert event.details["before"] == after.get(event.locker_id, {}), event
        after[event.locker_id] = event.details["after"]


def repairs(store, email: str) -> list[tuple[str, dict]]:
    """Return the actor and details of every membership-repaired journal entry about EMAIL."""
    return [(entry.actor, entry.details) for entry in journal.entries(store, email)
            if entry.action == "membership-repaired"]


def assert_redeem_and_activate_work(store, email: str, reference: str, pool: dict[str, int]) -> None:
    """EMAIL redeems one more unit of REFERENCE and activates one: no `busy`, and the pool adds up."""
    redeemed = locker.redeem(store, email, locker.issue_vouchers(store, reference, 1)[0])
    assert redeemed.balance == pool[reference] + 1
    activated = locker.activate(store, email, {"repair": reference}, "v1", [Requirement(reference, 1)], {},
                                on=date(2025, 1, 1))
    assert isinstance(activated, Activation)
    assert locker.balances(store, email) == pool


def test_the_migration_moves_stranded_members_into_the_live_locker(fresh_url, tag):
    rows = build_at_0005(fresh_url, tag, stranded=True)
    before = every_row(fresh_url)
    migrations.upgrade(fresh_url)
    assert migrations.current(fresh_url) == migrations.head()
    after = every_row(fresh_url)
    # Only c's and d's memberships change (joined_at kept); the journal and the audit trail gain one row each.
    moved = {rows.user_ids["c"], rows.user_ids["d"]}
    assert after["memberships"] == [(user_id, rows.locker_ids["a"] if user_id in moved else locker_id, joined)
                                    for user_id, locker_id, joined in before["memberships"]]
    for table in ("journal", "audit_events"):
        assert after[table][:len(before[table])] == before[table] and len(after[table]) == len(before[table]) + 2
    unchanged = set(before) - {"memberships", "journal", "audit_events"}
    assert {table: after[table] for table in unchanged} == {table: before[table] for table in unchanged}
    pool = {rows.reference(name): units for name, units in UNITS.items()}
    emails = {name: rows.email(name) for name in UNITS}
    with open_store(fresh_url) as store:
        shared = locker.show_locker(store, emails["a"])
        assert shared.id == rows.locker_ids["a"] and shared.balances == pool
        assert shared.members == tuple(sorted(emails.values()))
        for name in ("c", "d"):
            assert locker.show_locker(store, emails[name]) == shared
        assert repairs(store, emails["c"]) == [
            ("migration:0006", {"from_locker": rows.locker_ids["b"], "to_locker": rows.locker_ids["a"]})]
        assert repairs(store, emails["d"]) == [
            ("migration:0006", {"from_locker": rows.locker_ids["c"], "to_locker": rows.locker_ids["a"]})]
        assert repairs(store, emails["a"]) == repairs(store, emails["b"]) == []
        events = locker.audit(store, emails["c"])
        repaired = [event for event in events if event.action == "membership-repaired"]
        assert [(event.locker_id, event.actor, event.details["from_locker"]) for event in repaired] == [
            (rows.locker_ids["a"], emails["c"], rows.locker_ids["b"]),
            (rows.locker_ids["a"], emails["d"], rows.locker_ids["c"])]
        assert all(event.details["before"] == event.details["after"] == pool for event in repaired)
        assert_each_lockers_audit_chains(events)
        for name in ("c", "d"):
            assert_redeem_and_activate_work(store, emails[name], rows.reference(name), pool)
        assert_each_lockers_audit_chains(locker.audit(store, emails["a"]))
        assert len(repairs(store, emails["c"])) == len(repairs(store, emails["d"])) == 1


def test_the_migration_leaves_a_healthy_database_as_it_is(fresh_url, tag):
    build_at_0005(fresh_url, tag, stranded=False)
    before = every_row(fresh_url)
    migrations.upgrade(fresh_url)
    assert migrations.current(fresh_url) == migrations.head()
    assert every_row(fresh_url) == before


# --- the engine, on a database at head ----------------------------------------------------------------


def _point_membership(store, email: str, locker_id: int) -> None:
    with store.transaction() as session:
        user_id = session.scalar(select(tables.User.id).where(tables.User.email == email))
        session.execute(update(tables.Membership).where(tables.Membership.user_id == user_id).values(locker_id=locker_id))


def _merged_into(store, locker_id: int) -> int | None:
    with store.transaction() as session:
        return session.scalar(select(tables.Locker.merged_into).where(tables.Locker.id == locker_id))


@pytest.fixture
def stranded(store, make_user, fund, tag):
    """Users a, b, c as the race left them: c a member of b's locker, merged into a's with c's units."""
    users = {name: make_user(name) for name in ("a", "b", "c")}
    references = {name: f"{name.upper()}-{tag}" for name in users}
    for name, email in users.items():
        fund(email, references[name], UNITS[name])
    lockers = {name: locker.show_locker(store, email).id for name, email in users.items()}
    locker.invite(store, users["b"], users["c"])
    locker.accept(store, users["c"])
    # What b's accept saw under the race: nobody else in b's locker.
    _point_membership(store, users["c"], lockers["c"])
    locker.invite(store, users["a"], users["b"])
    locker.accept(store, users["b"])
    _point_membership(store, users["c"], lockers["b"])
    pool = {references[name]: UNITS[name] for name in users}
    assert locker.balances(store, users["a"]) == pool
    return users, references, lockers, pool


def test_a_stranded_user_never_merges_their_merged_locker_again(store, stranded, make_user, fund, tag):
    users, _references, lockers, _pool = stranded
    dan = make_user("dan")
    fund(dan, f"DAN-{tag}", 16)
    locker.invite(store, dan, users["c"])
    with pytest.raises(CompanionError) as refused:
        locker.accept(store, users["c"])
    assert refused.value.problems[0].code == "locker-merged"
    assert _merged_into(store, lockers["b"]) == lockers["a"]  # b's and c's history stay in a's family
    assert locker.balances(store, dan) == {f"DAN-{tag}": 16}
    assert locker.show_locker(store, dan).members == (dan,)


@pytest.mark.parametrize("first", ["show", "redeem"])
def test_a_stranded_user_is_moved_into_the_live_locker_on_their_next_action(store, stranded, first):
    users, references, lockers, pool = stranded
    if first == "show":
        view = locker.show_locker(store, users["c"])
    else:
        locker.redeem(store, users["c"], locker.issue_vouchers(store, references["c"], 1)[0])
        pool = {**pool, references["c"]: pool[references["c"]] + 1}
        view = locker.show_locker(store, users["c"])
    assert view == locker.show_locker(store, users["a"])
    assert view.id == lockers["a"] and view.balances == pool
    assert view.members == tuple(sorted(users.values()))
    assert repairs(store, users["c"]) == [
        ("engine:locker-repair", {"from_locker": lockers["b"], "to_locker": lockers["a"]})]
    events = locker.audit(store, users["c"])
    [repaired] = [event for event in events if event.action == "membership-repaired"]
    assert repaired.locker_id == lockers["a"] and repaired.actor == users["c"]
    assert_each_lockers_audit_chains(events)
    assert_redeem_and_activate_work(store, users["c"], references["c"], pool)
    assert len(repairs(store, users["c"])) == 1
    assert _merged_into(store, lockers["b"]) == lockers["a"]
