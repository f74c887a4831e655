"""Connecting to the locker database: its URL, and an engine with Companion's transaction discipline.

The URL comes from the caller, else `COMPANION_DATABASE_URL`, else an SQLite file `instance/companion.sqlite3`
under the current directory. Writers never overlap on one locker: PostgreSQL transactions lock the locker row
(`SELECT ... FOR UPDATE`); SQLite transactions start with `BEGIN IMMEDIATE` (WAL mode, busy timeout), so
writers queue up instead of failing or interleaving.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

DATABASE_URL_VARIABLE = "COMPANION_DATABASE_URL"
INSTANCE_FOLDER = "instance"
SQLITE_FILE = "companion.sqlite3"
SQLITE_BUSY_SECONDS = 60


def default_url() -> str:
    """Return `COMPANION_DATABASE_URL`, or an SQLite file in ./instance (the folder is created)."""
    url = os.environ.get(DATABASE_URL_VARIABLE, "").strip()
    if url:
        return url
    folder = Path.cwd() / INSTANCE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / SQLITE_FILE}"


def normalize_url(url: str) -> str:
    """Return the URL with the psycopg 3 driver for plain `postgresql://` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def build_engine(url: str, **options: Any) -> Engine:
    """Create an engine with Companion's transaction discipline for its dialect."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False}
        options.setdefault("pool_size", 20)
        options.setdefault("pool_timeout", SQLITE_BUSY_SECONDS)
        engine = create_engine(url, connect_args=connect_args, **options)
        _serialise_sqlite_writers(engine)
        return engine
    options.setdefault("pool_pre_ping", True)
    return create_engine(url, **options)


def _serialise_sqlite_writers(engine: Engine) -> None:
    """Let SQLAlchemy emit `BEGIN IMMEDIATE` itself; turn on WAL, foreign keys and a busy timeout."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
