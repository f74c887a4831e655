"""Idempotency keys on SQLite and PostgreSQL: one effect per key, the first answer replayed, kept 24 hours."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from engine.locker import idempotency
from engine import locker
from engine.locker import tables
from engine.locker.idempotency import Answer, Unchanged
from engine.locker.tables import IdempotencyKey
from engine.problem import CompanionError


def redeem_once(store, email: str, key: str, code: str) -> Answer:
    """Redeem CODE for EMAIL once per KEY."""
    asked = idempotency.fingerprint("redeem", code)
    return idempotency.once(store, email, key, asked,
                            lambda joined: Answer(200, locker.redeem(joined, email, code).to_json()))


def redemptions_of(store, code: str) -> int:
    with store.transaction() as session:
        voucher = session.scalar(select(tables.Voucher).where(tables.Voucher.code == code.replace("-", "")))
        return session.scalar(select(func.count()).select_from(tables.LedgerEntry)
                              .where(tables.LedgerEntry.voucher_id == voucher.id))


def test_a_replay_returns_the_first_answer_and_changes_nothing(store, make_user, tag):
    ann = make_user("ann")
    [code] = locker.issue_vouchers(store, f"REF-{tag}", 7)
    first = redeem_once(store, ann, f"key-{tag}", code)
    again = redeem_once(store, ann, f"key-{tag}", code)
    assert (first.replayed, again.replayed) == (False, True)
    assert again.status == first.status and again.body == first.body
    assert locker.balances(store, ann) == {f"REF-{tag}": 7} and redemptions_of(store, code) == 1


def test_a_key_reused_for_another_request_is_refused(store, make_user, tag):
    ann = make_user("ann")
    [first, second] = locker.issue_vouchers(store, f"REF-{tag}", 1, 2)
    redeem_once(store, ann, f"key-{tag}", first)
    with pytest.raises(CompanionError) as refused:
        redeem_once(store, ann, f"key-{tag}", second)
    assert refused.value.problems[0].code == "idempotency-key-reused"
    assert locker.balances(store, ann) == {f"REF-{tag}": 1}


def test_a_refusal_and_an_unchanged_answer_are_not_remembered(store, make_user, tag):
    ann = make_user("ann")
    with pytest.raises(CompanionError):
        redeem_once(store, ann, f"refused-{tag}", "AAAAA-AAAAA-AAAAA-AAAAB")
    answer = idempotency.once(store, ann, f"short-{tag}", "x", lambda joined: (_ for _ in ()).throw(
        Unchanged(Answer(200, {"activated": False}))))
    assert answer == Answer(200, {"activated": False})
    with store.transaction() as session:
        kept = session.scalars(select(IdempotencyKey.key).where(IdempotencyKey.owner == ann)).all()
    assert kept == []


def test_ten_threads_with_one_key_have_one_effect_and_one_answer(store, make_user, tag):
    ann = make_user("ann")
    [code] = locker.issue_vouchers(store, f"REF-{tag}", 3)
    barrier = threading.Barrier(10)

    def attempt(_):
        barrier.wait()
        return redeem_once(store, ann, f"key-{tag}", code)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(attempt, range(10)))
    assert [answer.replayed for answer in answers].count(False) == 1
    assert len({repr(answer.body) for answer in answers}) == 1 and {answer.status for answer in answers} == {200}
    assert redemptions_of(store, code) == 1 and locker.balances(store, ann) == {f"REF-{tag}": 3}


def test_answers_are_kept_at_least_24_hours_then_purged(store, make_user, tag):
    ann = make_user("ann")
    [young, old] = locker.issue_vouchers(store, f"REF-{tag}", 1, 2)
    redeem_once(store, ann, f"young-{tag}", young)
    redeem_once(store, ann, f"old-{tag}", old)
    with store.transaction() as session:
        session.execute(update(IdempotencyKey).where(IdempotencyKey.key == f"young-{tag}")
                        .values(created_at=tables.utcnow() - timedelta(hours=25)))
        session.execute(update(IdempotencyKey).where(IdempotencyKey.key == f"old-{tag}")
                        .values(created_at=tables.utcnow() - idempotency.KEEP - timedelta(minutes=1)))
    idempotency.purge(store)
    with store.transaction() as session:
        kept = set(session.scalars(select(IdempotencyKey.key).where(IdempotencyKey.owner == ann)))
    assert kept == {f"young-{tag}"}
    assert redeem_once(store, ann, f"young-{tag}", young).replayed  # a day later, still the first answer


def test_two_requests_with_one_key_at_once_run_the_work_once_and_both_get_its_answer(store, tag):
    """Regression (PostgreSQL): the request whose INSERT of the key lost the race failed with a 500."""
    runs = []

    def work(database):
        runs.append(1)
        time.sleep(0.3)  # the twin's insert of the key waits for this transaction
        return idempotency.Answer(200, {"done": True})

    answers = []

    def request():
        answers.append(idempotency.once(store, f"ann@{tag}.example", "one-key", "same request", work))

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(runs) == 1
    assert [(answer.status, answer.body) for answer in answers] == [(200, {"done": True})] * 2
    assert sorted(answer.replayed for answer in answers) == [False, True]
