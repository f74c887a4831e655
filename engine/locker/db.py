"""The Digital Locker's storage: SQLAlchemy models and the store that opens, migrates and serialises them.

`open_store(url)` returns a `Store` whose schema is at the newest Alembic revision. The URL comes from the
caller, else `COMPANION_DATABASE_URL`, else an SQLite file `instance/companion.sqlite3` under the current
directory. Writers never overlap on one locker: PostgreSQL transactions lock the locker row
(`SELECT ... FOR UPDATE`); SQLite transactions start with `BEGIN IMMEDIATE` (WAL mode, busy timeout), so
writers queue up instead of failing or interleaving.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

DATABASE_URL_VARIABLE = "COMPANION_DATABASE_URL"
INSTANCE_FOLDER = "instance"
SQLITE_FILE = "companion.sqlite3"
SQLITE_BUSY_SECONDS = 60

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every database (SQLite keeps naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(timezone.utc)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of the locker tables."""


class User(Base):
    """A partner account; its email is unique and stored lower-case."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    company: Mapped[str] = mapped_column(String(200))
    badges: Mapped[list] = mapped_column(JSONType)
    country: Mapped[str] = mapped_column(String(2))
    purchasing_account: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Locker(Base):
    """A Digital Locker; `merged_into` is set when its vouchers were added into a shared locker."""

    __tablename__ = "lockers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("lockers.id"), nullable=True)


class Membership(Base):
    """Which locker a user works in (exactly one per user once they have used it)."""

    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    locker_id: Mapped[int] = mapped_column(ForeignKey("lockers.id"), index=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Voucher(Base):
    """An issued voucher code for a commercial reference and a quantity (never changed)."""

    __tablename__ = "vouchers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    reference: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Redemption(Base):
    """A voucher redeemed into a locker; the primary key makes a second redemption impossible."""

    __tablename__ = "redemptions"

    voucher_id: Mapped[int] = mapped_column(ForeignKey("vouchers.id"), primary_key=True)
    locker_id: Mapped[int] = mapped_column(ForeignKey("lockers.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class Activation(Base):
    """An activated licence configuration with its Activation ID."""

    __tablename__ = "activations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    locker_id: Mapped[int] = mapped_column(ForeignKey("lockers.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("activations.id"), nullable=True)
    configuration: Mapped[dict] = mapped_column(JSONType)
    rules_version: Mapped[str] = mapped_column(String(128))
    badges: Mapped[list] = mapped_column(JSONType)
    lines: Mapped[list] = mapped_column(JSONType)
    activated_on: Mapped[date] = mapped_column(Date)
    term_start: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerEntry(Base):
    """One append-only movement of vouchers: positive credits, negative debits."""

    __tablename__ = "ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    locker_id: Mapped[int] = mapped_column(ForeignKey("lockers.id"), index=True)
    reference: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    voucher_id: Mapped[int | None] = mapped_column(ForeignKey("vouchers.id"), nullable=True)
    activation_id: Mapped[str | None] = mapped_column(ForeignKey("activations.id"), nullable=True, index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))


class Invitation(Base):
    """An owner's invitation to share their locker."""

    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    locker_id: Mapped[int] = mapped_column(ForeignKey("lockers.id"))
    inviter_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    invitee_email: Mapped[str] = mapped_column(String(254), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditEvent(Base):
    """Who did what to which locker, when, with balances before and after (append-only)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    locker_id: Mapped[int] = mapped_column(ForeignKey("lockers.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    details: Mapped[dict] = mapped_column(JSONType)


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


class Store:
    """An open locker database: an engine and a session factory."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sessions = sessionmaker(bind=engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """Return `sqlite` or `postgresql`."""
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """Return the database URL without its password."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield a session inside one transaction, committed on success and rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def joined(self, session: Session) -> "Store":
        """Return a store whose transactions are SESSION's: what it does commits or rolls back with the caller."""
        return JoinedStore(self, session)

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class JoinedStore(Store):
    """A store inside a caller's transaction (engine.locker.idempotency: an effect and its answer commit together)."""

    def __init__(self, outer: Store, session: Session):
        self.engine = outer.engine
        self.sessions = outer.sessions
        self._session = session

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield the caller's session; committing or rolling back is the caller's."""
        yield self._session

    def joined(self, session: Session) -> Store:
        """Return this store (already inside one transaction)."""
        return self


def open_store(url: str | None = None, *, migrate: bool = True, **engine_options: Any) -> Store:
    """Open the locker database at URL (default: see `default_url`), upgraded to the newest schema."""
    engine = build_engine(url or default_url(), **engine_options)
    if migrate:
        from engine.locker.migrations import upgrade_engine

        upgrade_engine(engine)
    return Store(engine)
