"""The ledger's invariants under any sequence of locker operations (issue #12): a Hypothesis state machine.

The machine drives the real engine on a real database, once on an SQLite file and once on the PostgreSQL
server, each example on a fresh database. A plain-Python model predicts every outcome: who has which locker,
what each activation debits (bill of materials, voucher packs, months left in the term), what is refused and
what an idempotency key replays. After every step the database is read directly and checked against the
ledger's invariants and the model:

- no balance is negative, and no running balance ever was, in ledger order;
- an activation's ledger debits equal the debits of its coverage lines and the model's;
- every balance is credits (redeemed vouchers, merges in) minus debits (activation lines, merges out);
- every user who has used the locker is a member of exactly one live locker;
- no voucher is credited twice;
- a merge moves every unit of the merged locker into its target;
- the audit trail chains (each event's balances before are the previous event's after), and what the engine
  shows a user (balances, activations, pending invitations) is what the model expects.

A refusal (CompanionError) and a replayed request must change nothing at all: every table is compared.
"""

from __future__ import annotations

import calendar
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)
from sqlalchemy import MetaData, select

from engine import locker
from engine.locker import voucher_codes
from engine.locker import tables
from engine.activation import activate_change, activate_configuration
from engine.inference.compile import load
from engine.locker.idempotency import Answer, Unchanged, fingerprint, once
from engine.problem import CompanionError
from engine.locker.db import open_store
from scratch_databases import create_database, drop_database

# Bounded for CI: at most 25 examples of 40 steps per database, each step checked against every invariant.
SETTINGS = settings(max_examples=25, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- what the model knows of the bundled catalogue (rules/*.yaml), restated so the engine is not its own oracle

ENTITLED = {"power-management", "power-automation"}  # badges that unlock epo (badges.yaml)
BADGES = ["power-management", "power-automation", "building-automation"]


@dataclass(frozen=True)
class Tier:
    """An epo tier: its rank, the devices it includes and the most it allows (tiers.yaml)."""

    rank: int
    included: int
    most: int
    code: str


TIERS = {"essential": Tier(0, 25, 100, "ESS"), "advanced": Tier(1, 50, 500, "ADV"),
         "expert": Tier(2, 100, 2500, "EXP")}
YEARS = {12: "1Y", 36: "3Y"}
PACK_UNITS = 25  # vouchers.yaml: EPO-DEV-SUB-1Y-P25 and EPO-DEV-SUB-3Y-P25
UPGRADES = {("essential", "advanced"): "EPO-AMD-ESS-ADV", ("advanced", "expert"): "EPO-AMD-ADV-EXP",
            ("essential", "expert"): "EPO-AMD-ESS-EXP"}  # subscriptions.yaml, per month
PATH_MONTHS_LEFT = {("essential", "expert"): 12}  # tiers.yaml: the path's when, change.months_left at least
DEVICE_AMENDMENT = "EPO-AMD-DEV"  # per device per month

# Configurations to activate: (tier, term in months, devices); the last two break the rules (over the limit).
CONFIGURATIONS = [("essential", 36, 100), ("essential", 12, 40), ("advanced", 12, 50), ("advanced", 36, 80),
                  ("expert", 12, 150), ("advanced", 12, 30), ("essential", 12, 120), ("advanced", 36, 501)]


def tier_reference(tier: str, term: int) -> str:
    """Return the licence reference of a tier for a term."""
    return f"EPO-{TIERS[tier].code}-SUB-{YEARS[term]}"


def device_reference(term: int) -> str:
    """Return the device licence reference for a term (its pack is the same with -P25)."""
    return f"EPO-DEV-SUB-{YEARS[term]}"


PACKS = {device_reference(term): device_reference(term) + "-P25" for term in YEARS}
REFERENCES = sorted({tier_reference(tier, term) for tier in TIERS for term in YEARS} | set(PACKS)
                    | set(PACKS.values()) | set(UPGRADES.values()) | {DEVICE_AMENDMENT})

NAMES = ["ann", "bob", "cid", "dee"]
DOMAINS = ["acme.example", "other.example"]
EMAILS = [f"{name}@{domain}" for name in NAMES for domain in DOMAINS]
KEYS = ["key-1", "key-2", "key-3"]  # a small pool, so that keys repeat
keys = st.one_of(st.none(), st.sampled_from(KEYS))


def configuration(tier: str, term: int, devices: int) -> dict:
    """Return an epo subscription configuration."""
    return {"product": "epo", "version": "2024", "license": "subscription", "term_months": term, "tier": tier,
            "devices": devices}


def anniversary(start: date, months: int) -> date:
    """Return the same day MONTHS later, or that month's last day when it is shorter (subscriptions.py)."""
    year, month = divmod(start.year * 12 + start.month - 1 + months, 12)
    return date(year, month + 1, min(start.day, calendar.monthrange(year, month + 1)[1]))


def months_used(start: date, day: date) -> int:
    """Return how many whole term months lie before the month DAY falls in."""
    months = (day.year - start.year) * 12 + day.month - start.month
    return months - 1 if anniversary(start, months) > day else months


def bill_of_materials(tier: str, term: int, devices: int) -> list[tuple[str, int]]:
    """Return the lines (reference, units) of a configuration: its tier licence and devices beyond those included."""
    lines = [(tier_reference(tier, term), 1)]
    if devices > TIERS[tier].included:
        lines.append((device_reference(term), devices - TIERS[tier].included))
    return lines


def allowed(badge: str, tier: str, devices: int) -> bool:
    """Return whether the rules accept a configuration for a user with BADGE."""
    return badge in ENTITLED and devices <= TIERS[tier].most


def cover(lines: list[tuple[str, int]], balances: Counter) -> tuple[dict, dict]:
    """Return the vouchers the lines take from BALANCES and, if short, the vouchers still missing.

    A device line is covered by packs of 25, then single vouchers (vouchers.yaml); no two lines of one
    configuration draw on the same references, so each line is matched alone. Of every number of packs, the
    engine's optimum (README, "How vouchers are matched") keeps the one leaving the fewest units uncovered,
    then wasting the fewest, then needing the smallest purchase, then using the most packs; what is missing
    is bought in packs of 25 and singles, exactly (fewest vouchers, no surplus).
    """
    pool, taken, missing = Counter(balances), Counter(), Counter()
    for reference, units in lines:
        pack = PACKS.get(reference)
        if not pack:
            count = min(pool[reference], units)
            pool[reference] -= count
            taken[reference] += count
            if units - count:
                missing[reference] += units - count
            continue
        choices = []
        for packs in range(min(pool[pack], math.ceil(units / PACK_UNITS)) + 1):
            singles = min(pool[reference], max(units - packs * PACK_UNITS, 0))
            covered = packs * PACK_UNITS + singles
            gap = max(units - covered, 0)
            bought = gap // PACK_UNITS + gap % PACK_UNITS
            choices.append(((gap, max(covered - units, 0), bought, -packs), packs, singles, gap))
        _, packs, singles, gap = min(choices)
        pool[pack] -= packs
        pool[reference] -= singles
        taken[pack] += packs
        taken[reference] += singles
        if gap // PACK_UNITS:
            missing[pack] += gap // PACK_UNITS
        if gap % PACK_UNITS:
            missing[reference] += gap % PACK_UNITS
    return {reference: count for reference, count in sorted(taken.items()) if count}, dict(sorted(missing.items()))


def nonzero(counts) -> dict:
    """Return the non-zero counts (Counter's unary + would also drop the negative ones we look for)."""
    return {key: value for key, value in sorted(counts.items()) if value}


# --- the model -------------------------------------------------------------------------------------------


@dataclass
class Subscription:
    """An activation as the model expects it."""

    locker: str  # the owner of the locker it was debited from
    kind: str
    parent: str | None
    tier: str
    term: int
    devices: int
    term_start: date
    activated_on: date
    debits: dict
    child: str | None = None  # the amendment or renewal that changed it


@dataclass
class Invitation:
    """An invitation as the model expects it."""

    locker: str
    invitee: str
    accepted: bool = False


@dataclass
class Keyed:
    """The first answer to a keyed request, and how to send that request again."""

    asked: str
    body: dict
    resend: tuple  # (method name, keyword arguments)


@dataclass
class Expected:
    """What the model expects of an activation, amendment or renewal that the rules accept."""

    lines: list
    tier: str
    term: int
    devices: int
    term_start: date
    on: date
    debits: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)


class SQLiteFiles:
    """A fresh SQLite file per example."""

    def __init__(self, folder: Path):
        self.folder, self.count = folder, 0

    def create(self) -> str:
        self.count += 1
        return f"sqlite:///{self.folder / f'machine-{self.count}.sqlite3'}"

    def drop(self, url: str) -> None:
        path = url.removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)


class PostgresDatabases:
    """A fresh PostgreSQL database per example, dropped after it."""

    def __init__(self, admin, base: str):
        self.admin, self.base = admin, base

    def create(self) -> str:
        return create_database(self.admin, self.base, prefix="companion_machine")

    def drop(self, url: str) -> None:
        drop_database(self.admin, url)


class LedgerMachine(RuleBasedStateMachine):
    """Users, vouchers, activations, amendments, renewals, sharing and idempotency keys against one model."""

    def __init__(self, databases, compiled):
        super().__init__()
        self.databases, self.compiled = databases, compiled
        self.url = databases.create()
        self.store = open_store(self.url)
        self.tables = MetaData()
        self.tables.reflect(self.store.engine)
        self.today = date(2025, 6, 1)
        self.users: dict[str, str] = {}  # email -> badge
        self.member_of: dict[str, str] = {}  # email -> owner of the live locker they work in
        self.lockers: dict[str, Counter] = {}  # owner -> balances
        self.merged_into: dict[str, str] = {}  # owner of a merged locker -> owner of its target
        self.moved: dict[str, dict] = {}  # owner of a merged locker -> what the merge moved
        self.vouchers: dict[str, tuple[str, int]] = {}  # code -> (reference, quantity)
        self.redeemed: dict[str, str] = {}  # code -> owner of the locker it was credited to
        self.invitations: dict[str, Invitation] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.keyed: dict[tuple[str, str], Keyed] = {}
        self.shortfall: tuple | None = None  # (email, missing, method, arguments) of the last shortfall
        self.unknown_code = voucher_codes.new_voucher_code()  # well formed, never issued
        self.turn = 0  # whose views the invariants read this step

    def teardown(self):
        self.store.close()
        self.databases.drop(self.url)

    # --- model helpers --------------------------------------------------------------------------------

    def live(self, owner: str) -> str:
        """Return the owner of the live locker OWNER's locker ended up in."""
        while owner in self.merged_into:
            owner = self.merged_into[owner]
        return owner

    def family(self, owner: str) -> set[str]:
        """Return the locker of OWNER and every locker merged into it, as the engine's access check does."""
        return {other for other in self.lockers if self.live(other) == owner}

    def members(self, owner: str) -> set[str]:
        """Return who works in OWNER's locker."""
        return {email for email, locker_owner in self.member_of.items() if locker_owner == owner}

    def use_locker(self, email: str) -> str:
        """Return the owner of EMAIL's live locker, creating the locker as the engine does on first use."""
        if email not in self.member_of:
            self.member_of[email] = email
            self.lockers[email] = Counter()
        return self.member_of[email]

    def balances_of(self, email: str) -> Counter:
        """Return the balances EMAIL works with (none before their first use)."""
        return self.lockers[self.member_of[email]] if email in self.member_of else Counter()

    # --- reading the database -------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """Return every row of every table, to show that a step changed nothing."""
        with self.store.transaction() as session:
            return {name: [tuple(row) for row in session.execute(
                        select(table).order_by(*(table.primary_key.columns or table.columns)))]
                    for name, table in self.tables.tables.items()}

    # --- sending requests -----------------------------------------------------------------------------

    def send(self, email: str, key: str | None, asked: str, work, unchanged=lambda body: False):
        """Run WORK(store) -> body directly, or with KEY once per (EMAIL, KEY) as the web API does."""
        if key is None:
            return work(self.store), False

        def effect(joined):
            answer = Answer(200, work(joined))
            if unchanged(answer.body):  # nothing was debited: not remembered, like a refusal
                raise Unchanged(answer)
            return answer

        answer = once(self.store, email, key, asked, effect)
        return answer.body, answer.replayed

    def expect_refusal(self, what: str, code: str, send) -> None:
        """Check that SEND (WHAT is asked) raises CompanionError CODE and changes nothing."""
        before = self.snapshot()
        with pytest.raises(CompanionError) as raised:
            send()
        assert raised.value.problems[0].code == code, raised.value.problems
        assert self.snapshot() == before, f"refusal {code} changed the database"
        event(f"{what}: refused {code}")

    def answered_by_key(self, what: str, email: str, key: str | None, asked: str, send) -> bool:
        """Handle a request whose key was answered before: replay it, or refuse another request with it."""
        stored = self.keyed.get((email, key)) if key else None
        if stored is None:
            return False
        if stored.asked != asked:
            self.expect_refusal(what, "idempotency-key-reused", send)
            return True
        before = self.snapshot()
        body, replayed = send()
        assert replayed and body == stored.body, "a replay must return the first answer"
        assert self.snapshot() == before, "a replay changed the database"
        event(f"{what}: replayed")
        return True

    def remember(self, email: str, key: str | None, asked: str, body: dict, resend: tuple) -> None:
        """Keep the answer to a keyed request, as the database does (JSON text)."""
        if key is not None:
            self.keyed[(email, key)] = Keyed(asked, json.loads(json.dumps(body)), resend)

    # --- operations, each predicted by the model ------------------------------------------------------

    def do_issue(self, reference: str, quantity: int, count: int) -> list[str]:
        issued = locker.issue_vouchers(self.store, reference, quantity, count)
        assert len(set(issued)) == count and not set(issued) & set(self.vouchers)
        self.vouchers.update((code, (reference, quantity)) for code in issued)
        return issued

    def do_redeem(self, email: str, code: str, key: str | None) -> None:
        asked = fingerprint("redeem", code)
        resend = ("do_redeem", {"email": email, "code": code, "key": key})

        def send():
            return self.send(email, key, asked, lambda store: locker.redeem(store, email, code).to_json())

        if self.answered_by_key("redeem", email, key, asked, send):
            return
        if code not in self.vouchers:
            return self.expect_refusal("redeem", "unknown-code", send)
        if code in self.redeemed:
            return self.expect_refusal("redeem", "already-redeemed", send)
        body, replayed = send()
        reference, quantity = self.vouchers[code]
        owner = self.use_locker(email)
        self.lockers[owner][reference] += quantity
        self.redeemed[code] = owner
        assert not replayed and (body["reference"], body["quantity"]) == (reference, quantity)
        assert body["balance"] == self.lockers[owner][reference]
        self.remember(email, key, asked, body, resend)
        event("redeemed")

    def do_activate(self, email: str, index: int, key: str | None, on: date | None, operator: str | None) -> None:
        tier, term, devices = CONFIGURATIONS[index]
        wanted = configuration(tier, term, devices)
        asked = fingerprint("activate", wanted, on, operator)
        resend = ("do_activate", {"email": email, "index": index, "key": key, "on": on, "operator": operator})

        def work(store):
            return activate_configuration(store, self.compiled, email, wanted, today=self.today, on=on,
                                          operator=operator).to_json()

        def send():
            return self.send(email, key, asked, work, lambda body: not body["activated"])

        if self.answered_by_key("activation", email, key, asked, send):
            return
        if on is not None and on != self.today and operator is None:
            return self.expect_refusal("activation", "date-not-today", send)
        day = on or self.today
        expected = None
        if allowed(self.users[email], tier, devices):
            expected = Expected(bill_of_materials(tier, term, devices), tier, term, devices, day, day)
        self.debit(email, key, asked, send, resend, "activation", None, expected)

    def do_change(self, email: str, parent: str, kind: str, change: dict, key: str | None) -> None:
        asked = fingerprint(kind, parent, change)
        resend = ("do_change", {"email": email, "parent": parent, "kind": kind, "change": change, "key": key})

        def work(store):
            return activate_change(store, self.compiled, email, parent, change, kind, today=self.today).to_json()

        def send():
            return self.send(email, key, asked, work, lambda body: not body["activated"])

        if self.answered_by_key(kind, email, key, asked, send):
            return
        running = self.subscriptions[parent]
        if email not in self.member_of or running.locker not in self.family(self.member_of[email]):
            return self.expect_refusal(kind, "forbidden", send)
        if change.get("date", self.today.isoformat()) != self.today.isoformat():
            return self.expect_refusal(kind, "date-not-today", send)
        if self.today < running.activated_on:
            return self.expect_refusal(kind, "before-parent", send)
        expected = (self.amendment if kind == "amendment" else self.renewal)(email, running, change)
        if expected is not None and not expected.lines:
            return self.expect_refusal(kind, "nothing-to-activate", send)
        if expected is not None and running.child is not None:
            return self.expect_refusal(kind, "already-changed", send)
        self.debit(email, key, asked, send, resend, kind, parent, expected)

    def amendment(self, email: str, running: Subscription, change: dict) -> Expected | None:
        """Return what an amendment dated today charges and makes of RUNNING, or None if the rules refuse it."""
        end = anniversary(running.term_start, running.term)
        if not running.term_start <= self.today < end:
            return None  # before the start or on or after the end: renew instead
        months = running.term - months_used(running.term_start, self.today)
        old, new = TIERS[running.tier], TIERS[change.get("tier", running.tier)]
        wanted = change.get("devices", running.devices)
        if new.rank < old.rank or wanted < running.devices:
            return None  # downgrades and removals wait for the renewal
        lines = []
        if new is not old:
            if months < PATH_MONTHS_LEFT.get((running.tier, change["tier"]), 0):
                return None  # the direct path is open only with enough months left
            lines.append((UPGRADES[(running.tier, change["tier"])], months))
        # Device licences paid for stay: the new tier's included devices plus those; only more are charged.
        paid = max(0, running.devices - old.included)
        needed = max(paid, wanted - new.included)
        if needed > paid:
            lines.append((DEVICE_AMENDMENT, (needed - paid) * months))
        devices = wanted if needed == 0 else new.included + needed
        tier = change.get("tier", running.tier)
        if not allowed(self.users[email], tier, devices):
            return None
        return Expected(lines, tier, running.term, devices, running.term_start, self.today)

    def renewal(self, email: str, running: Subscription, change: dict) -> Expected | None:
        """Return what a renewal asked for today costs and starts, or None if the rules refuse it."""
        end = anniversary(running.term_start, running.term)
        term = change.get("term_months", running.term)
        if self.today < running.term_start or self.today >= anniversary(end, term):
            return None  # a late renewal is back-dated to the old end, but not past the whole new term
        tier, devices = change.get("tier", running.tier), change.get("devices", running.devices)
        if not allowed(self.users[email], tier, devices):
            return None
        return Expected(bill_of_materials(tier, term, devices), tier, term, devices, end, end)

    def debit(self, email, key, asked, send, resend, kind, parent, expected: Expected | None) -> None:
        """Send an activation, amendment or renewal the rules judged; check it against the model and apply it."""
        before = self.snapshot()
        if expected is None:
            body, _ = send()
            assert not body["activated"] and not body["verdict"]["valid"], body["verdict"]
            assert self.snapshot() == before, "a configuration the rules refuse changed the database"
            reasons = ", ".join(sorted(item["code"] for item in body["verdict"]["violations"]))
            event(f"{kind}: refused by the rules ({reasons})")
            return
        expected.debits, expected.missing = cover(expected.lines, self.balances_of(email))
        body, replayed = send()
        assert not replayed and body["verdict"]["valid"], body["verdict"]
        if expected.missing:
            assert not body["activated"] and body["shortfall"]["missing"] == expected.missing, body
            created = key is None and email not in self.member_of  # a keyed shortfall rolls back, locker and all
            if created:
                self.use_locker(email)
            ignored = {"lockers", "memberships"} if created else set()
            after = self.snapshot()
            assert {name: rows for name, rows in before.items() if name not in ignored} == {
                name: rows for name, rows in after.items() if name not in ignored}, "a shortfall changed the ledger"
            self.shortfall = (email, expected.missing, resend[0], {**resend[1], "key": None})
            event(f"{kind}: shortfall")
            return
        assert body["activated"], body
        activation = body["activation"]
        owner = self.use_locker(email)
        for reference, count in expected.debits.items():
            self.lockers[owner][reference] -= count
        assert activation["debits"] == expected.debits
        assert (activation["kind"], activation["parent"]) == (kind, parent)
        self.subscriptions[activation["id"]] = Subscription(
            owner, kind, parent, expected.tier, expected.term, expected.devices, expected.term_start, expected.on,
            expected.debits)
        if parent is not None:
            self.subscriptions[parent].child = activation["id"]
        self.remember(email, key, asked, body, resend)
        event(f"{kind}: debited")

    def do_invite(self, owner: str, invitee: str) -> None:
        def send():
            return locker.invite(self.store, owner, invitee)

        locker_owner = self.member_of.get(owner, owner)
        if locker_owner != owner:
            return self.expect_refusal("invitation", "not-owner", send)
        if invitee == owner:
            return self.expect_refusal("invitation", "self-invitation", send)
        if self.member_of.get(invitee) == owner:
            return self.expect_refusal("invitation", "already-member", send)
        pending = [key for key, item in self.invitations.items()
                   if (item.locker, item.invitee, item.accepted) == (owner, invitee, False)]
        before = self.snapshot()
        sent = send()
        assert bool(sent.warnings) == (invitee.split("@")[1] != owner.split("@")[1])
        if pending:  # the same invitation again: the pending one, nothing new
            assert [sent.id] == pending and self.snapshot() == before
            event("invited again")
            return
        assert sent.id not in self.invitations
        self.use_locker(owner)
        self.invitations[sent.id] = Invitation(owner, invitee)
        event("invited")

    def do_accept(self, email: str, invitation_id: str | None) -> None:
        def send():
            return locker.accept(self.store, email, invitation_id)

        pending = [key for key, item in self.invitations.items() if item.invitee == email and not item.accepted]
        if invitation_id is not None and invitation_id not in pending:
            mine = self.invitations[invitation_id].invitee == email
            return self.expect_refusal("acceptance", "already-accepted" if mine else "unknown-invitation", send)
        if invitation_id is None and len(pending) != 1:
            return self.expect_refusal("acceptance", "ambiguous-invitation" if pending else "no-invitation", send)
        invitation = self.invitations[invitation_id or pending[0]]
        own = self.member_of.get(email)
        if own == invitation.locker:
            return self.expect_refusal("acceptance", "already-member", send)
        if own is not None and self.members(own) - {email}:
            return self.expect_refusal("acceptance", "already-shared", send)
        if invitation.locker in self.merged_into:
            return self.expect_refusal("acceptance", "invitation-expired", send)
        done = send()
        moved = {}
        if own is not None:
            moved = nonzero(self.lockers[own])
            for reference, count in moved.items():
                self.lockers[invitation.locker][reference] += count
            self.lockers[own] = Counter()
            self.merged_into[own], self.moved[own] = invitation.locker, moved
        self.member_of[email] = invitation.locker
        invitation.accepted = True
        assert done.merged == moved and done.locker.owner == invitation.locker
        assert set(done.locker.members) == self.members(invitation.locker)
        event("accepted, merged" if own else "accepted")

    # --- rules ----------------------------------------------------------------------------------------

    @initialize(first=st.sampled_from(EMAILS), second=st.sampled_from(EMAILS),
                start=st.sampled_from([date(2025, 6, 1), date(2025, 1, 31), date(2024, 2, 29)]))
    def begin(self, first, second, start):
        """Start with two entitled users (maybe one), on a day whose anniversaries may fall on shorter months."""
        self.today = start
        for email in dict.fromkeys([first, second]):
            self.add_user(email, "power-management")

    @precondition(lambda self: len(self.users) < len(EMAILS))
    @rule(data=st.data(), badge=st.sampled_from(BADGES), again=st.integers(0, 4))
    def add_user_rule(self, data, badge, again):
        """Add a new user, or one time in five someone who exists already."""
        fresh = sorted(set(EMAILS) - set(self.users))
        self.add_user(data.draw(st.sampled_from(sorted(self.users) if again == 0 else fresh)), badge)

    def add_user(self, email, badge):
        def send():
            return locker.add_user(self.store, email, company="Co", badges=[badge], country="US")

        if email in self.users:
            return self.expect_refusal("new user", "duplicate-user", send)
        send()
        self.users[email] = badge

    @rule(reference=st.sampled_from(REFERENCES), quantity=st.sampled_from([1, 2, 10, 25, 36]),
          count=st.integers(1, 2))
    def issue(self, reference, quantity, count):
        """Issue codes nobody has redeemed yet."""
        self.do_issue(reference, quantity, count)

    @precondition(lambda self: self.users)
    @rule(data=st.data(), index=st.integers(0, len(CONFIGURATIONS) - 1), packs=st.booleans())
    def fund(self, data, index, packs):
        """Buy and redeem exactly what a configuration needs, device licences in packs or one by one."""
        email = data.draw(st.sampled_from(sorted(self.users)))
        for reference, units in bill_of_materials(*CONFIGURATIONS[index]):
            if reference in PACKS and packs and units // PACK_UNITS:
                [code] = self.do_issue(PACKS[reference], units // PACK_UNITS, 1)
                self.do_redeem(email, code, None)
                units %= PACK_UNITS
            if units:
                [code] = self.do_issue(reference, units, 1)
                self.do_redeem(email, code, None)

    @precondition(lambda self: self.users and self.vouchers)
    @rule(data=st.data(), key=keys, known=st.integers(0, 9))
    def redeem(self, data, key, known):
        """Redeem an issued code (maybe already redeemed), or one time in ten a code never issued."""
        email = data.draw(st.sampled_from(sorted(self.users)))
        code = data.draw(st.sampled_from(list(self.vouchers))) if known else self.unknown_code
        self.do_redeem(email, code, key)

    @precondition(lambda self: self.users)
    @rule(data=st.data(), key=keys,
          dating=st.sampled_from(["none", "today", "none", "today", "another day", "backdated"]),
          days=st.integers(1, 400))
    def activate(self, data, key, dating, days):
        """Activate a configuration, more often one the user's locker covers."""
        email = data.draw(st.sampled_from(sorted(self.users)))
        covered = [index for index, (tier, term, devices) in enumerate(CONFIGURATIONS)
                   if not cover(bill_of_materials(tier, term, devices), self.balances_of(email))[1]]
        if covered and data.draw(st.booleans(), label="covered"):
            index = data.draw(st.sampled_from(covered))
        else:
            index = data.draw(st.integers(0, len(CONFIGURATIONS) - 1))
        on = {"none": None, "today": self.today, "another day": self.today + timedelta(days=days),
              "backdated": self.today - timedelta(days=days)}[dating]
        self.do_activate(email, index, key, on, "cli:test" if dating == "backdated" else None)
        self.maybe_buy_what_was_missing(data)

    def parent_for(self, data) -> str:
        """Draw an activation to change, most often the latest of its chain (the others are already changed)."""
        latest = [key for key, item in self.subscriptions.items() if item.child is None]
        if latest and data.draw(st.booleans(), label="latest"):
            return data.draw(st.sampled_from(latest))
        return data.draw(st.sampled_from(list(self.subscriptions)))

    def actor_for(self, data, activation_id: str) -> str:
        """Draw a user, most often one who works in the locker the activation belongs to now."""
        members = sorted(self.members(self.live(self.subscriptions[activation_id].locker)))
        if members and data.draw(st.integers(0, 3), label="member"):  # three times in four
            return data.draw(st.sampled_from(members))
        return data.draw(st.sampled_from(sorted(self.users)))

    @precondition(lambda self: self.subscriptions)
    @rule(data=st.data(), tier=st.sampled_from([None, "essential", "advanced", "expert"]),
          more=st.sampled_from([None, 0, 10, 60, -5]), key=keys,
          dating=st.sampled_from(["none", "today", "none", "other"]))
    def amend(self, data, tier, more, key, dating):
        """Amend an activation: a tier, more devices (or fewer, refused), nothing, or dated another day."""
        parent = self.parent_for(data)
        change = {} if tier is None else {"tier": tier}
        if more is not None:
            change["devices"] = self.subscriptions[parent].devices + more
        if dating != "none":
            change["date"] = (self.today + timedelta(days=1 if dating == "other" else 0)).isoformat()
        self.do_change(self.actor_for(data, parent), parent, "amendment", change, key)
        self.maybe_buy_what_was_missing(data)

    @precondition(lambda self: self.subscriptions)
    @rule(data=st.data(), term=st.sampled_from([None, 12, 36]), tier=st.sampled_from([None, "essential", "expert"]),
          key=keys)
    def renew(self, data, term, tier, key):
        """Renew an activation, maybe for another term or tier (a downgrade is allowed at renewal)."""
        parent = self.parent_for(data)
        change = {name: value for name, value in (("term_months", term), ("tier", tier)) if value is not None}
        self.do_change(self.actor_for(data, parent), parent, "renewal", change, key)
        self.maybe_buy_what_was_missing(data)

    def maybe_buy_what_was_missing(self, data) -> None:
        """After a shortfall, often buy what it says is missing at once and send the request again."""
        if self.shortfall is not None and data.draw(st.booleans(), label="buy at once"):
            self.buy_what_was_missing_and_retry()

    @precondition(lambda self: self.shortfall is not None)
    @rule()
    def buy_what_was_missing_and_retry(self):
        """Do what a shortfall says: buy the missing vouchers, redeem them, and send the request again."""
        email, missing, method, arguments = self.shortfall
        self.shortfall = None
        for reference, quantity in missing.items():
            [code] = self.do_issue(reference, quantity, 1)
            self.do_redeem(email, code, None)
        getattr(self, method)(**arguments)

    @precondition(lambda self: self.users)
    @rule(data=st.data(), anyone=st.booleans())
    def invite(self, data, anyone):
        """Invite another user, or any email (maybe nobody's yet, maybe the owner's own)."""
        owner = data.draw(st.sampled_from(sorted(self.users)))
        others = sorted(set(self.users) - {owner})
        self.do_invite(owner, data.draw(st.sampled_from(others if others and not anyone else EMAILS)))

    @precondition(lambda self: self.invitations)
    @rule(data=st.data(), by_id=st.booleans())
    def accept(self, data, by_id):
        """Accept the only pending invitation, or one by id (maybe someone else's, maybe accepted already)."""
        invitation_id = data.draw(st.sampled_from(list(self.invitations))) if by_id else None
        if invitation_id is not None and data.draw(st.booleans()):
            email = self.invitations[invitation_id].invitee  # half the time the invitee themselves
        else:
            email = data.draw(st.sampled_from(sorted(self.users)))
        if email in self.users:
            self.do_accept(email, invitation_id)

    @precondition(lambda self: self.keyed)
    @rule(data=st.data())
    def replay(self, data):
        """Send a keyed request again, as a client retrying or a browser resubmitting does."""
        stored = self.keyed[data.draw(st.sampled_from(list(self.keyed)))]
        method, arguments = stored.resend
        getattr(self, method)(**arguments)

    @precondition(lambda self: self.keyed)
    @rule(data=st.data())
    def reuse_key(self, data):
        """Send another request with a key already answered: refused, the new voucher stays unredeemed."""
        email, key = data.draw(st.sampled_from(list(self.keyed)))
        [code] = self.do_issue(REFERENCES[0], 1, 1)
        self.do_redeem(email, code, key)

    @rule(days=st.integers(1, 60))
    def advance_days(self, days):
        """Let days pass on the server's clock."""
        self.today += timedelta(days=days)

    @rule(months=st.integers(1, 12))
    def advance_months(self, months):
        """Move to the same day months later (or the month's last day): terms run out, renewals fall due."""
        self.today = anniversary(self.today, months)

    # --- invariants, read from the database -----------------------------------------------------------

    @invariant()
    def the_ledger_invariants_hold(self):
        """Read the tables once and check every invariant against them and the model."""
        rows = self.rows()
        self.check_no_balance_is_or_was_negative(rows)
        self.check_activation_debits_match_their_lines_and_the_model(rows)
        self.check_balances_are_credits_minus_debits(rows)
        self.check_every_user_works_in_exactly_one_live_locker(rows)
        self.check_no_voucher_is_credited_twice(rows)
        self.check_merges_conserve_units(rows)
        self.check_idempotency_keys_are_the_models(rows)
        self.check_the_audit_trail_chains(rows)
        self.check_what_users_are_shown(rows)

    def rows(self) -> "Rows":
        """Return what the invariants read, in one transaction."""
        with self.store.transaction() as session:
            def every(model):
                return list(session.scalars(select(model).order_by(*model.__table__.primary_key.columns)))

            emails = {row.id: row.email for row in every(tables.User)}
            lockers = {row.id: row for row in every(tables.Locker)}
            return Rows(
                emails=emails, lockers=lockers, owners={key: emails[row.owner_id] for key, row in lockers.items()},
                memberships=every(tables.Membership), vouchers={row.id: row for row in every(tables.Voucher)},
                redemptions={row.voucher_id: row for row in every(tables.Redemption)},
                activations={row.id: row for row in every(tables.Activation)}, ledger=every(tables.LedgerEntry),
                audit=every(tables.AuditEvent),
                invitations=every(tables.Invitation),
                keys={(row.owner, row.key): json.loads(row.answer)  # kept as JSON text
                      for row in session.execute(select(self.tables.tables["idempotency_keys"]))})

    def check_no_balance_is_or_was_negative(self, rows: "Rows") -> None:
        running = Counter()
        for row in rows.ledger:
            running[(row.locker_id, row.reference)] += row.quantity
            assert running[(row.locker_id, row.reference)] >= 0, f"ledger row {row.id} takes {row.reference} below 0"

    def check_activation_debits_match_their_lines_and_the_model(self, rows: "Rows") -> None:
        assert set(rows.activations) == set(self.subscriptions)
        debited: dict[str, Counter] = {}
        for row in rows.ledger:
            if row.kind == "activation" or row.activation_id is not None:
                assert row.activation_id in rows.activations and row.voucher_id is None and row.quantity < 0, row.id
                assert row.locker_id == rows.activations[row.activation_id].locker_id, row.id
                debited.setdefault(row.activation_id, Counter())[row.reference] -= row.quantity
        for row in rows.activations.values():
            expected = self.subscriptions[row.id]
            assert nonzero(debited.get(row.id, {})) == nonzero(line_debits(row)) == expected.debits, row.id
            assert (rows.owners[row.locker_id], row.kind, row.parent_id) == (
                expected.locker, expected.kind, expected.parent)
            assert (row.term_start, row.activated_on) == (expected.term_start, expected.activated_on)
            written = row.configuration
            assert (written["tier"], written["term_months"], written["devices"]) == (
                expected.tier, expected.term, expected.devices)

    def check_balances_are_credits_minus_debits(self, rows: "Rows") -> None:
        assert {row.kind for row in rows.ledger} <= {"redemption", "activation", "merge"}
        summed, expected = Counter(), Counter()
        for row in rows.ledger:
            summed[(row.locker_id, row.reference)] += row.quantity
            if row.kind == "merge":  # checked against the audit trail and the model in check_merges_conserve_units
                expected[(row.locker_id, row.reference)] += row.quantity
        for redemption in rows.redemptions.values():
            voucher = rows.vouchers[redemption.voucher_id]
            expected[(redemption.locker_id, voucher.reference)] += voucher.quantity
        for activation in rows.activations.values():
            for reference, count in line_debits(activation).items():
                expected[(activation.locker_id, reference)] -= count
        assert nonzero(summed) == nonzero(expected), "the ledger is not the redemptions minus the activation lines"
        by_owner = {(rows.owners[locker_id], reference): count for (locker_id, reference), count in summed.items()}
        model = {(owner, reference): count for owner, balances in self.lockers.items()
                 for reference, count in balances.items()}
        assert nonzero(by_owner) == nonzero(model)

    def check_every_user_works_in_exactly_one_live_locker(self, rows: "Rows") -> None:
        assert len({row.user_id for row in rows.memberships}) == len(rows.memberships)
        assert {rows.emails[row.user_id]: rows.owners[row.locker_id] for row in rows.memberships} == self.member_of
        for row in rows.memberships:
            assert rows.lockers[row.locker_id].merged_into is None, f"{rows.emails[row.user_id]} is in a merged locker"
        assert sorted(rows.owners.values()) == sorted(self.lockers), "one locker per user who has used it"
        assert {rows.owners[row.id]: rows.owners[row.merged_into] for row in rows.lockers.values()
                if row.merged_into is not None} == self.merged_into
        pending = {row.id: (rows.owners[row.locker_id], row.invitee_email) for row in rows.invitations
                   if row.accepted_at is None}
        assert pending == {key: (item.locker, item.invitee) for key, item in self.invitations.items()
                           if not item.accepted}

    def check_no_voucher_is_credited_twice(self, rows: "Rows") -> None:
        credits = [row for row in rows.ledger if row.kind == "redemption"]
        assert sorted(row.voucher_id for row in credits) == sorted(rows.redemptions), "credited twice, or never"
        for row in credits:
            voucher, redemption = rows.vouchers[row.voucher_id], rows.redemptions[row.voucher_id]
            assert (row.locker_id, row.reference, row.quantity, row.activation_id) == (
                redemption.locker_id, voucher.reference, voucher.quantity, None)
        assert {voucher_codes.format_voucher_code(rows.vouchers[voucher_id].code): rows.owners[row.locker_id]
                for voucher_id, row in rows.redemptions.items()} == self.redeemed

    def check_merges_conserve_units(self, rows: "Rows") -> None:
        merges = [row for row in rows.ledger if row.kind == "merge"]
        total = Counter()
        for row in merges:
            total[row.reference] += row.quantity
            assert (row.voucher_id, row.activation_id) == (None, None)
        assert not nonzero(total), "merge rows do not cancel out"
        for merged in rows.lockers.values():
            if merged.merged_into is None:
                continue
            out = Counter({row.reference: -row.quantity for row in merges if row.locker_id == merged.id})
            moves = {(row.by_user_id, row.at) for row in merges if row.locker_id == merged.id}
            into = Counter()
            for row in merges:
                if row.locker_id == merged.merged_into and (row.by_user_id, row.at) in moves:
                    into[row.reference] += row.quantity
            owner = rows.owners[merged.id]
            [moved] = [row.details["moved"] for row in rows.audit
                       if (row.locker_id, row.action) == (merged.id, "merge")]
            assert nonzero(out) == nonzero(into) == moved == self.moved[owner], owner
            assert all(row.quantity < 0 for row in merges if row.locker_id == merged.id)
            left = Counter()
            for row in rows.ledger:
                if row.locker_id == merged.id:
                    left[row.reference] += row.quantity
            assert not nonzero(left), f"units left behind in merged locker {merged.id}"

    def check_idempotency_keys_are_the_models(self, rows: "Rows") -> None:
        assert rows.keys == {pair: stored.body for pair, stored in self.keyed.items()}

    def check_the_audit_trail_chains(self, rows: "Rows") -> None:
        """Each audit event's balances before are the previous event's after; the last after is the balance."""
        last: dict[int, dict] = {}
        for row in rows.audit:
            assert row.details["before"] == last.get(row.locker_id, {}), f"audit event {row.id} ({row.action})"
            last[row.locker_id] = row.details["after"]
        for locker_id, owner in rows.owners.items():
            assert last.get(locker_id, {}) == nonzero(self.lockers[owner]), f"audit trail of {owner}'s locker"

    def check_what_users_are_shown(self, rows: "Rows") -> None:
        """A user is shown their balances, their family's activations and their pending invitations.

        One user per step, in turn: the engine's views lock rows, and every user at every step would double
        the time on PostgreSQL.
        """
        if not self.users:
            return
        self.turn += 1
        email = sorted(self.users)[self.turn % len(self.users)]
        pending = [key for key, item in self.invitations.items() if item.invitee == email and not item.accepted]
        assert [item.id for item in locker.pending_invitations(self.store, email)] == pending
        if email in self.member_of:  # reading creates the locker of someone who has none
            owner = self.member_of[email]
            assert locker.balances(self.store, email) == nonzero(self.lockers[owner])
            family = self.family(owner)
            shown = [item.id for item in locker.list_activations(self.store, email)]
            assert sorted(shown) == sorted(key for key, item in self.subscriptions.items() if item.locker in family)


@dataclass
class Rows:
    """The tables the invariants read."""

    emails: dict
    lockers: dict
    owners: dict  # locker id -> owner email
    memberships: list
    vouchers: dict
    redemptions: dict  # voucher id -> redemption
    activations: dict
    ledger: list  # in ledger order
    audit: list
    invitations: list
    keys: dict  # (owner, key) -> stored answer


def line_debits(activation: tables.Activation) -> Counter:
    """Return the vouchers an activation's coverage lines say it used."""
    used = Counter()
    for line in activation.lines:
        for debit in line["debits"]:
            used[debit["voucher_reference"]] += debit["vouchers"]
    return used


@pytest.fixture(scope="module")
def compiled():
    return load(None)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_ledger_invariants_hold_for_any_sequence_of_operations(backend, request, tmp_path, compiled):
    """Run the machine once per database; each example on a fresh one."""
    if backend == "sqlite":
        databases = SQLiteFiles(tmp_path)
    else:
        databases = PostgresDatabases(*request.getfixturevalue("postgres_admin"))
    run_state_machine_as_test(lambda: LedgerMachine(databases, compiled), settings=SETTINGS)
