"""engine.idempotency on both backends: two requests with one key at once have one effect and one answer."""

from __future__ import annotations

import threading
import time

from engine import idempotency


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
