"""Work done in other processes by the race and crash tests (importable, and runnable as a script).

    python locker_workers.py crash URL EMAIL REFERENCE   activate in a loop, printing each Activation ID
"""

from __future__ import annotations

import sys
import time
from datetime import date

from sqlalchemy import event

from engine import locker
from engine.locker import Activation
from engine.services.coverage import Requirement
from engine.locker.db import open_store


def activate_many(url: str, email: str, reference: str, units: int, attempts: int, start_at: float) -> list[str]:
    """Try ATTEMPTS activations of UNITS of REFERENCE; return the Activation IDs that succeeded."""
    store = open_store(url)
    try:
        time.sleep(max(0.0, start_at - time.time()))
        done = []
        for _ in range(attempts):
            result = locker.activate(store, email, {"worker": "process"}, "race", [Requirement(reference, units)],
                                     {}, on=date(2025, 1, 1))
            if isinstance(result, Activation):
                done.append(result.id)
        return done
    finally:
        store.close()


def crash_loop(url: str, email: str, reference: str) -> None:
    """Activate forever, slowly inside each transaction, so that a SIGKILL lands in the middle of one."""
    store = open_store(url)

    @event.listens_for(store.engine, "before_cursor_execute")
    def _linger(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO LEDGER"):
            time.sleep(0.01)

    lines = [Requirement(reference, 1), Requirement(reference + "-B", 2)]
    while True:
        result = locker.activate(store, email, {"worker": "crash"}, "crash", lines, {}, on=date(2025, 1, 1))
        print(result.id if isinstance(result, Activation) else "SHORT", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "crash":
        crash_loop(*sys.argv[2:5])
    else:
        raise SystemExit(f"unknown command {sys.argv[1]}")
