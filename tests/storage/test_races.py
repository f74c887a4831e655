"""Races and crashes: concurrent activations never spend the same vouchers; a killed process leaves no half.

The locker can afford exactly 5 activations; 16 threads (and on PostgreSQL 4 processes) try at once.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

import locker_workers
from engine import locker
from engine.locker import tables
from engine.locker import Activation, Shortfall
from engine.services.coverage import Requirement
from engine.locker.db import open_store

HERE = Path(__file__).resolve().parent


def locker_id(store, email) -> int:
    return locker.show_locker(store, email).id


def assert_ledger_never_negative(store, email) -> None:
    mine = locker_id(store, email)
    with store.transaction() as session:
        rows = session.execute(select(tables.LedgerEntry.reference, tables.LedgerEntry.quantity)
                               .where(tables.LedgerEntry.locker_id == mine)
                               .order_by(tables.LedgerEntry.id)).all()
    running = Counter()
    for reference, quantity in rows:
        running[reference] += quantity
        assert running[reference] >= 0, rows


def assert_audit_adds_up(store, email, activations: int, spent: dict[str, int]) -> None:
    events = locker.audit(store, email)
    assert Counter(event.action for event in events)["activation"] == activations
    previous = None
    for event in events:  # the events chain: each one starts where the one before ended
        if previous is not None:
            assert event.details["before"] == previous, event
        previous = event.details["after"]
        assert all(quantity >= 0 for quantity in event.details["after"].values())
    total = Counter()
    for event in events:
        if event.action == "activation":
            total.update(event.details["debits"])
    assert dict(total) == spent


def test_sixteen_threads_five_affordable_activations(store, make_user, fund, tag):
    """Four members of one shared locker, four threads each: the locker row lock must serialise them."""
    ann = make_user("ann")
    members = [ann]
    for name in ("bob", "cat", "dan"):
        members.append(make_user(name))
        locker.invite(store, ann, members[-1])
        locker.accept(store, members[-1])
    reference = f"EPO-{tag}"
    fund(ann, reference, 10)
    barrier = threading.Barrier(16)

    def attempt(number):
        barrier.wait()
        return locker.activate(store, members[number % 4], {"worker": "thread"}, "race",
                               [Requirement(reference, 2)], {}, on=date(2025, 1, 1))

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(attempt, range(16)))
    assert sum(isinstance(result, Activation) for result in results) == 5
    assert sum(isinstance(result, Shortfall) for result in results) == 11
    assert len({result.id for result in results if isinstance(result, Activation)}) == 5
    assert locker.balances(store, ann) == {}
    assert_ledger_never_negative(store, ann)
    assert_audit_adds_up(store, ann, 5, {reference: 10})


@pytest.mark.postgres
def test_four_processes_five_affordable_activations(postgresql_url, tag):
    with open_store(postgresql_url) as store:
        ann = f"ann@{tag}.example"
        locker.add_user(store, ann, company="Acme", badges=["power-management"], country="US")
        reference = f"EPO-{tag}"
        for code in locker.issue_vouchers(store, reference, 2, count=5):
            locker.redeem(store, ann, code)
        store.close()  # no pooled connection may be inherited by the forked processes
        start_at = time.time() + 1.0  # every process has connected by then
        with multiprocessing.get_context("fork").Pool(4) as pool:
            batches = pool.starmap(locker_workers.activate_many,
                                   [(postgresql_url, ann, reference, 2, 4, start_at)] * 4)
        done = [activation for batch in batches for activation in batch]
        assert len(done) == len(set(done)) == 5
        assert locker.balances(store, ann) == {}
        assert_ledger_never_negative(store, ann)
        assert_audit_adds_up(store, ann, 5, {reference: 10})


def test_killed_process_leaves_every_activation_whole_or_absent(store, database_url, make_user, fund, tag):
    ann = make_user("ann")
    reference = f"EPO-{tag}"
    fund(ann, reference, 500)
    fund(ann, reference + "-B", 1000)
    process = subprocess.Popen([sys.executable, str(HERE / "locker_workers.py"), "crash", database_url, ann,
                                reference], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    printed = []
    try:
        while len(printed) < 8:
            line = process.stdout.readline()
            assert line, process.stderr.read()
            printed.append(line.strip())
        time.sleep(0.013)  # land inside the next activation's transaction
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    mine = locker_id(store, ann)
    with store.transaction() as session:
        activations = list(session.scalars(select(tables.Activation).where(
            tables.Activation.locker_id == mine)))
        debits = Counter()
        for reference_, activation_id, quantity in session.execute(
                select(tables.LedgerEntry.reference, tables.LedgerEntry.activation_id, tables.LedgerEntry.quantity)
                .where(tables.LedgerEntry.kind == "activation",
                       tables.LedgerEntry.activation_id.in_([row.id for row in activations]))):
            debits[(activation_id, reference_)] += -quantity
        orphans = session.scalar(select(func.count()).select_from(tables.LedgerEntry).where(
            tables.LedgerEntry.locker_id == mine, tables.LedgerEntry.kind == "activation",
            tables.LedgerEntry.activation_id.is_(None)))
    assert orphans == 0
    assert set(printed) <= {row.id for row in activations}
    assert len(activations) in (len(printed), len(printed) + 1)
    for row in activations:  # fully applied: both debits present, exactly as recorded
        assert debits[(row.id, reference)] == 1 and debits[(row.id, reference + "-B")] == 2
    count = len(activations)
    assert locker.balances(store, ann) == {reference: 500 - count, reference + "-B": 1000 - 2 * count}
    assert_audit_adds_up(store, ann, count, {reference: count, reference + "-B": 2 * count})
