"""Scratch PostgreSQL databases for the storage tests: find the server, create and drop databases."""

from __future__ import annotations

import os
import secrets

from sqlalchemy import create_engine, text

ADMIN_URLS = [url for url in (os.environ.get("COMPANION_TEST_POSTGRES_ADMIN_URL"),
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test",
                              "postgresql+psycopg://root@127.0.0.1:5432/test") if url]


def admin_engine():
    """Return an autocommit engine on the server's `test` database and its URL, or raise the last error."""
    last = None
    for url in ADMIN_URLS:
        engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return engine, url
        except Exception as error:  # noqa: BLE001 - any failure means "unreachable"; reported below
            last = error
            engine.dispose()
    raise RuntimeError(f"{type(last).__name__}: {str(last).strip().splitlines()[0] if last else '?'}")


def create_database(admin, base_url: str, prefix: str = "companion_test") -> str:
    """Create a uniquely named database and return its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return base_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin, url: str) -> None:
    """Drop the database at URL, disconnecting whoever is still connected."""
    name = url.rsplit("/", 1)[1]
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
