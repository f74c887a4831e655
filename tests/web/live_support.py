"""Helpers of the tests that talk to a real `companion serve` (gunicorn) over the network: starting and stopping
the server on a free port of 127.0.0.1, and Debian's Chromium (/usr/bin/chromium, never a downloaded browser)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sqlalchemy import select

from engine.locker import accounts
from engine import locker
from engine.locker import tables
from web_support import PASSWORD

COMPANION = Path(sys.executable).with_name("companion")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def require_chromium() -> None:
    """Skip without Chromium, except in CI where a missing browser is a failure."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: run scripts/install-chromium.sh as root (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(root: Path, database_url: str, rules: Path | None = None, workers: int = 2) -> Iterator[str]:
    """Run `companion serve` with WORKERS workers on a free port until the block ends; yield its base URL.

    The server's output goes to ROOT/serve.log (quoted when it does not start); its instance folder is ROOT/instance.
    """
    port = free_port()
    command = [str(COMPANION), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
               "--database-url", database_url, "--instance", str(root / "instance")]
    if rules is not None:
        command += ["--rules", str(rules)]
    log_path = root / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(base + "/api/v1/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("companion serve did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.2)
            yield base
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def seed_partners(store, users: dict, email_of, company: str) -> str:
    """Add power-management partners (name -> vouchers to redeem) with the test password; return a spare code."""
    for name, vouchers in users.items():
        locker.add_user(store, email_of(name), company=company, badges=["power-management"], country="US")
        accounts.set_password(store, email_of(name), PASSWORD)
        for reference, quantity in vouchers:
            [code] = locker.issue_vouchers(store, reference, quantity)
            locker.redeem(store, email_of(name), code)
    [spare] = locker.issue_vouchers(store, "EPO-DEV-SUB-3Y", 25)
    return spare


def ledger(store, email: str) -> list[tuple]:
    """The ledger rows of EMAIL's locker, oldest first: (kind, reference, quantity, activation ID)."""
    locker_id = locker.show_locker(store, email).id
    with store.transaction() as session:
        rows = session.scalars(select(tables.LedgerEntry).where(tables.LedgerEntry.locker_id == locker_id)
                               .order_by(tables.LedgerEntry.id))
        return [(row.kind, row.reference, row.quantity, row.activation_id) for row in rows]


def sign_in(page, base: str, email: str) -> None:
    """Sign in through the form of the sign-in page (Configure is the page after)."""
    page.goto(base + "/signin")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]:has-text('Sign in')")
    page.wait_for_url(re.compile(r".*/configure.*"))
