"""Alembic migrations of the locker schema, run from code: `upgrade(url)` brings a database to head.

No alembic.ini is needed: the configuration is built here. Developers create a revision with
`python -m engine.locker.migrations revision -m "what changes"` and then edit it by hand (no autogenerate
against a production database).
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import CommandLine, Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from engine.locker.connect import build_engine, default_url

HERE = Path(__file__).resolve().parent
# Any 64-bit number, the same for every process: PostgreSQL serialises concurrent first opens on it.
ADVISORY_LOCK_KEY = 0x436F6D70616E  # "Compan"


def alembic_config() -> Config:
    """Return the Alembic configuration of the locker schema."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("version_locations", str(HERE / "versions"))
    config.set_main_option("path_separator", "os")
    return config


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database behind ENGINE to REVISION, safely when several processes open it at once."""
    config = alembic_config()
    with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE, so one opener migrates at a time
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Upgrade the database at URL (default: the configured one) to REVISION."""
    engine = build_engine(url or default_url())
    try:
        upgrade_engine(engine, revision)
    finally:
        engine.dispose()


def head() -> str:
    """Return the newest revision of the locker schema."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(url: str | None = None) -> str | None:
    """Return the revision the database at URL is at, or None when it was never migrated."""
    engine = build_engine(url or default_url())
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    """Run an Alembic command on the configured database (`revision`, `upgrade`, `history`, ...)."""
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", default_url())
    cli = CommandLine(prog="python -m engine.locker.migrations")
    options = cli.parser.parse_args(argv if argv is not None else sys.argv[1:])
    cli.run_cmd(config, options)
