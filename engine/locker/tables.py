"""Every table of the locker database, in one place: the SQLAlchemy models and their column types.

The schema itself is made by the Alembic migrations (engine/locker/migrations); these models are how the code
reads and writes it, and they must follow the newest revision.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import JSON, Date, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

MAX_PROJECT_NAME = 120

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


# --- the locker (migration 0001_locker) ---


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


# --- web accounts (migration 0002_web) ---


class Credential(Base):
    """A user's password hash and role (table added by migration 0002_web)."""

    __tablename__ = "credentials"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(32))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProjectRow(Base):
    """A saved configuration of one user (table added by migration 0002_web)."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(MAX_PROJECT_NAME))
    configuration: Mapped[dict] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- orders (migration 0003_orders) ---


class OrderRow(Base):
    """An order the vendor's cart confirmed (table added by migration 0003_orders)."""

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("project_id", "idempotency_key", name="uq_orders_project_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"), index=True,
                                                   nullable=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    project_name: Mapped[str] = mapped_column(String(120))
    account: Mapped[str] = mapped_column(String(100))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    confirmation: Mapped[str] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer)
    lines: Mapped[list] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- journal (migration 0004_journal) ---


class JournalRow(Base):
    """One state change: who, what, about whom or what, when, and the details (append-only)."""

    __tablename__ = "journal"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(320), index=True)
    details: Mapped[dict] = mapped_column(JSONType)


# --- idempotency keys (migration 0005_idempotency) ---


class IdempotencyKey(Base):
    """The first answer to a request sent with a key: who, which key, what was asked, what was answered."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "key", name="uq_idempotency_owner_key"),
                      Index("ix_idempotency_created_at", "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(320))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    answer: Mapped[str] = mapped_column(Text)  # JSON text: PostgreSQL's JSONB would reorder the keys of a replay
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
