"""The store migrates itself to head on open: idempotent, and safe when several processes open it first."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect

from scratch_databases import create_database, drop_database
from engine.locker import migrations
from engine.locker.connect import default_url
from engine.locker.db import open_store

TABLES = {"users", "lockers", "memberships", "vouchers", "redemptions", "activations", "ledger", "invitations",
          "audit_events", "alembic_version"}


def open_concurrently(url: str, count: int = 6) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def first_open():
        barrier.wait()
        try:
            open_store(url).close()
        except BaseException as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=first_open) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def check_schema(url: str) -> None:
    with open_store(url) as store:
        assert TABLES <= set(inspect(store.engine).get_table_names())
    assert migrations.current(url) == migrations.head()


def test_concurrent_first_opens_of_a_new_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh' / 'companion.sqlite3'}"
    assert open_concurrently(url) == []
    check_schema(url)
    migrations.upgrade(url)  # again: nothing to do
    check_schema(url)


@pytest.mark.postgres
def test_concurrent_first_opens_of_a_new_postgresql_database(postgres_admin):
    admin, base = postgres_admin
    url = create_database(admin, base, prefix="companion_test_open")
    try:
        assert open_concurrently(url) == []
        check_schema(url)
        migrations.upgrade(url.replace("postgresql+psycopg://", "postgresql://"))
        check_schema(url)
    finally:
        drop_database(admin, url)


def test_default_url_is_an_sqlite_file_in_the_instance_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPANION_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_url() == f"sqlite:///{tmp_path / 'instance' / 'companion.sqlite3'}"
    assert (tmp_path / "instance").is_dir()
    monkeypatch.setenv("COMPANION_DATABASE_URL", "postgresql://somewhere/db")
    assert default_url() == "postgresql://somewhere/db"
