"""Fixtures of the storage tests: every database test runs on SQLite (a temp file) and on PostgreSQL.

Each test session creates a PostgreSQL database of its own (companion_test_<random>) on 127.0.0.1:5432 and
drops it at the end. When the server is unreachable the PostgreSQL tests are skipped with the reason, except
under CI (the CI environment variable set), where they fail: CI must not pass without them.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest
from engine import locker
from engine.locker.db import open_store

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # scratch_databases and locker_workers, also for spawned processes
    sys.path.insert(0, str(HERE))

from scratch_databases import admin_engine, create_database, drop_database  # noqa: E402


def pytest_report_header(config):
    try:
        engine, url = admin_engine()
        engine.dispose()
        return f"storage: PostgreSQL reachable ({url.rsplit('@', 1)[-1]})"
    except RuntimeError as error:
        return f"storage: PostgreSQL NOT reachable ({error}); its tests will be skipped (fail under CI)"


@pytest.fixture(scope="session")
def postgres_admin():
    """An autocommit engine on the PostgreSQL server, or a skip (a failure under CI)."""
    try:
        engine, url = admin_engine()
    except RuntimeError as error:
        reason = (f"PostgreSQL is not reachable on 127.0.0.1:5432 ({error}); "
                  "the PostgreSQL storage tests did not run")
        if os.environ.get("CI"):
            pytest.fail(f"CI requires PostgreSQL: {reason}", pytrace=False)
        pytest.skip(reason)
    yield engine, url
    engine.dispose()


@pytest.fixture(scope="session")
def postgresql_url(postgres_admin):
    """A PostgreSQL database of this test session, dropped at the end."""
    admin, base = postgres_admin
    url = create_database(admin, base)
    yield url
    drop_database(admin, url)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    """An SQLite file of this test session."""
    return f"sqlite:///{tmp_path_factory.mktemp('locker') / 'companion.sqlite3'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request):
    """The URL of a migrated-or-empty test database, once per backend."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def store(database_url):
    """An open store on the test database (upgraded to head)."""
    opened = open_store(database_url)
    yield opened
    opened.close()


@pytest.fixture
def tag():
    """A short random tag that keeps one test's users and references apart from the others'."""
    return secrets.token_hex(4)


@pytest.fixture
def make_user(store, tag):
    """Add a user NAME@<tag>.example (or the given domain) and return its email."""

    def make(name: str, domain: str | None = None, badges=("power-management",), country="US") -> str:
        email = f"{name}@{domain or tag + '.example'}"
        locker.add_user(store, email, company=f"{name} & co", badges=list(badges), country=country)
        return email

    return make


@pytest.fixture
def fund(store):
    """Issue vouchers of REFERENCE and redeem them into USER's locker; return the codes."""

    def fund(user: str, reference: str, quantity: int, count: int = 1) -> list[str]:
        issued = locker.issue_vouchers(store, reference, quantity, count)
        for code in issued:
            locker.redeem(store, user, code)
        return issued

    return fund
