"""Activations per second of the Digital Locker on SQLite and PostgreSQL, with 1 and 4 concurrent clients.

Run by hand: `.venv/bin/python bench/locker_bench.py [--rounds 5] [--per-client 60] [--processes]`.
Each client is a user activating a three-line configuration (one line covered by packs) in a loop; the
clients either share one locker (every activation waits for the locker row lock) or own a locker each.
Clients are threads of this process, or processes with --processes. Prints the median over the rounds.
PostgreSQL runs in a scratch database (created and dropped) on 127.0.0.1:5432; it is skipped, with the
reason, when the server is unreachable.
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from engine import locker  # noqa: E402
from engine.locker import Activation  # noqa: E402
from engine.services.coverage import Requirement, VoucherUnit  # noqa: E402
from engine.locker.db import open_store  # noqa: E402

ADMIN_URLS = ("postgresql+psycopg://postgres@127.0.0.1:5432/test", "postgresql+psycopg://root@127.0.0.1:5432/test")
LINES = [Requirement("EPO-ADV", 1, "tier"), Requirement("EPO-DEV", 150, "devices"), Requirement("EPO-IM", 1, "add-on")]
MATCHING = {"EPO-DEV": [VoucherUnit("EPO-DEV-100", 100)]}
CONFIGURATION = {"product": "epo", "tier": "advanced", "devices": 150, "addons": [{"id": "insulation-monitoring"}]}


def prepare(url: str, clients: int, shared: bool, activations: int) -> list[str]:
    """Create the users (and share one locker if SHARED) with vouchers for ACTIVATIONS activations each."""
    tag = secrets.token_hex(3)
    with open_store(url) as store:
        users = [f"client{index}@{tag}.example" for index in range(clients)]
        for email in users:
            locker.add_user(store, email, company="Bench", badges=["power-management"], country="US")
        if shared:
            for email in users[1:]:
                locker.invite(store, users[0], email)
                locker.accept(store, email)
        holders = users[:1] if shared else users
        per_holder = activations * (clients if shared else 1)
        for email in holders:
            for reference, quantity in (("EPO-ADV", per_holder), ("EPO-DEV-100", 2 * per_holder),
                                        ("EPO-IM", per_holder)):
                code, = locker.issue_vouchers(store, reference, quantity)
                locker.redeem(store, email, code)
    return users


def run_client(url: str, email: str, count: int, start_at: float) -> tuple[int, float, float]:
    """Activate COUNT times as EMAIL from START_AT on; return how many succeeded, when it started and ended."""
    with open_store(url) as store:
        time.sleep(max(0.0, start_at - time.time()))
        started = time.time()
        done = _activate(store, email, count)
        return done, started, time.time()


def _activate(store, email: str, count: int) -> int:
    done = 0
    for _ in range(count):
        result = locker.activate(store, email, CONFIGURATION, "bench", LINES, MATCHING, on=date(2025, 1, 1))
        done += isinstance(result, Activation)
    return done


def one_round(url: str, clients: int, shared: bool, per_client: int, processes: bool) -> float:
    """Return the activations per second of one round."""
    users = prepare(url, clients, shared, per_client)
    if processes:
        start_at = time.time() + 3.0  # every process has started and connected by then (else: counted late)
        with multiprocessing.get_context("spawn").Pool(clients) as pool:
            results = pool.starmap(run_client, [(url, email, per_client, start_at) for email in users])
        done = sum(result[0] for result in results)
        elapsed = max(result[2] for result in results) - min(result[1] for result in results)
    else:
        store = open_store(url)
        results = [0] * clients
        barrier = threading.Barrier(clients + 1)

        def client(index: int) -> None:
            barrier.wait()
            results[index] = _activate(store, users[index], per_client)

        threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
        for thread in threads:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        store.close()
        done = sum(results)
    assert done == clients * per_client, f"{done} of {clients * per_client} activations succeeded"
    return done / elapsed


def postgres_scratch():
    """Return (admin engine, URL of a new database), or (None, reason)."""
    for admin_url in ADMIN_URLS:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        try:
            with admin.connect() as connection:
                name = f"companion_bench_{secrets.token_hex(4)}"
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            return admin, admin_url.rsplit("/", 1)[0] + f"/{name}"
        except Exception as error:  # noqa: BLE001 - reported as the reason to skip
            reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
            admin.dispose()
    return None, reason


def main() -> None:
    """Run every scenario and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-client", type=int, default=60)
    parser.add_argument("--processes", action="store_true", help="clients are processes, not threads")
    options = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="locker-bench-")
    backends = [("sqlite", f"sqlite:///{folder}/bench.sqlite3", None)]
    admin, url_or_reason = postgres_scratch()
    if admin is None:
        print(f"postgresql: skipped ({url_or_reason})")
    else:
        backends.append(("postgresql", url_or_reason, admin))
    kind = "processes" if options.processes else "threads"
    print(f"{'database':11} {'clients':>7} {'locker':7} {'activations/s (median of ' + str(options.rounds) + ')':>34}"
          f"   min..max   ({kind}, {options.per_client} activations per client per round)")
    try:
        for name, url, _admin in backends:
            open_store(url).close()
            for clients in (1, 4):
                for shared in ((False,) if clients == 1 else (True, False)):
                    rates = [one_round(url, clients, shared, options.per_client, options.processes)
                             for _ in range(options.rounds)]
                    layout = "shared" if shared else "own"
                    print(f"{name:11} {clients:>7} {layout:7} {statistics.median(rates):>34.0f}   "
                          f"{min(rates):.0f}..{max(rates):.0f}", flush=True)
    finally:
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{url_or_reason.rsplit("/", 1)[1]}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
