"""Idempotency keys: a request sent twice (a refresh, a resubmitted form, a client's retry) has one effect.

`once(store, owner, key, fingerprint, work)` runs WORK inside one transaction together with the row that
records its answer, so the effect and the answer commit together or not at all: a worker killed before the
commit leaves nothing, after it the retry finds the answer. The same key from the same owner returns the first
answer and changes nothing; with another request (another fingerprint) it is refused. Two requests with one
key at once: on PostgreSQL the second insert of the key waits for the first transaction and then reads its
answer; SQLite runs writers one at a time. A refusal (`CompanionError`) rolls back and is not remembered:
it changed nothing, so sending it again simply tries again; so is an answer WORK marks `Unchanged` (a
shortfall: nothing was debited). Answers are kept `KEEP` (at least 24 hours).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.locker.db import Store
from engine.locker.tables import IdempotencyKey, utcnow
from engine.problem import CompanionError, Problem

KEEP = timedelta(hours=48)
PURGE_EVERY = 600.0  # seconds between two purges of expired keys by one process
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as a header carries it


@dataclass(frozen=True)
class Answer:
    """What a request answered: a status and a JSON body; REPLAYED when it is the stored first answer."""

    status: int
    body: dict
    replayed: bool = False


class Unchanged(Exception):
    """WORK changed nothing and answers ANSWER (a shortfall, say): roll back and remember nothing."""

    def __init__(self, answer: Answer):
        super().__init__(answer.status)
        self.answer = answer


def check_key(key, path: str = "Idempotency-Key") -> str:
    """Return KEY if it is 1 to 255 visible ASCII characters, or refuse it as `bad-idempotency-key`."""
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise CompanionError([Problem("bad-idempotency-key", "an idempotency key is 1 to 255 visible ASCII "
                                      "characters (no spaces)", path=path,
                                      hint="send a new random key, such as a UUID, for each new request")])
    return key


def fingerprint(*parts) -> str:
    """Return a digest of what a request asks (method, path, body ...), to tell a replay from a reused key."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def once(store: Store, owner: str, key: str, asked: str, work: Callable[[Store], Answer]) -> Answer:
    """Run WORK once for OWNER's KEY and return its answer; a replay returns the stored answer unchanged."""
    key = check_key(key)
    purge_now_and_then(store)
    try:
        return _once(store, owner, key, asked, work)
    except Unchanged as unchanged:
        return unchanged.answer


def _once(store: Store, owner: str, key: str, asked: str, work: Callable[[Store], Answer]) -> Answer:
    with store.transaction() as session:
        earlier = _find(session, owner, key)
        if earlier is not None:
            return _replay(earlier, asked)
        row = IdempotencyKey(owner=owner, key=key, fingerprint=asked, status=0, answer="", created_at=utcnow())
        try:
            with session.begin_nested():  # a savepoint: losing the race must not abort the transaction
                session.add(row)
        except IntegrityError:  # a twin with this key committed while this insert waited (PostgreSQL)
            return _replay(_find(session, owner, key), asked)  # the savepoint's rollback dropped ROW
        answer = work(store.joined(session))
        row.status, row.answer = answer.status, json.dumps(answer.body, ensure_ascii=False)
        session.flush()
        return answer


def earlier(store: Store, owner: str, prefix: str, asked: str) -> tuple[str, Answer] | None:
    """Return the newest of OWNER's keys starting with PREFIX that answered the request ASKED, and its answer."""
    with store.transaction() as session:
        row = session.scalar(select(IdempotencyKey).where(
            IdempotencyKey.owner == owner, IdempotencyKey.fingerprint == asked,
            IdempotencyKey.key.startswith(prefix, autoescape=True)).order_by(IdempotencyKey.id.desc()).limit(1))
        return (row.key, _stored(row)) if row is not None else None


def _find(session: Session, owner: str, key: str) -> IdempotencyKey | None:
    return session.scalar(select(IdempotencyKey).where(IdempotencyKey.owner == owner, IdempotencyKey.key == key))


def _replay(row: IdempotencyKey, asked: str) -> Answer:
    if row.fingerprint != asked:
        raise CompanionError([Problem(
            "idempotency-key-reused", "this idempotency key was already used for a different request",
            path="Idempotency-Key", hint="send a new key for a new request; the same key only repeats the "
                                         f"request it was first sent with (on {row.created_at:%Y-%m-%d %H:%M} UTC)")])
    return _stored(row)


def _stored(row: IdempotencyKey) -> Answer:
    return Answer(row.status, json.loads(row.answer), replayed=True)


_last_purge = [0.0]
_purge_lock = threading.Lock()


def purge_now_and_then(store: Store) -> None:
    """Delete answers older than KEEP, at most once every PURGE_EVERY seconds per process."""
    now = time.monotonic()
    with _purge_lock:
        if _last_purge[0] and now - _last_purge[0] < PURGE_EVERY:
            return
        _last_purge[0] = now
    purge(store)


def purge(store: Store, keep: timedelta = KEEP) -> int:
    """Delete answers older than KEEP; return how many."""
    with store.transaction() as session:
        result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - keep))
        return result.rowcount or 0
