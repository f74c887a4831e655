"""Users as the locker knows them: partner accounts with a company, badges, a country and a purchasing account.

The email is the key, unique regardless of case; every change is journaled (engine.locker.journal).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.locker import journal, tables
from engine.locker.db import Store
from engine.locker.tables import utcnow
from engine.problem import refusal

EMAIL_PATTERN = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$"
)
COUNTRY_PATTERN = re.compile(r"^[A-Z]{2}$")
BADGE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_UNSET: Any = object()


@dataclass(frozen=True)
class User:
    """A partner account as the locker sees it."""

    email: str
    company: str
    badges: tuple[str, ...]
    country: str
    purchasing_account: str | None
    created_at: datetime

    def to_json(self) -> dict:
        """Return the user as a JSON-ready dict."""
        data = asdict(self)
        data["badges"] = list(self.badges)
        data["created_at"] = self.created_at.isoformat()
        return data


def normalize_email(email: str) -> str:
    """Return EMAIL lower-cased and trimmed, or raise `malformed-email`."""
    text = str(email or "").strip()
    if len(text) > 254 or not EMAIL_PATTERN.match(text):
        raise refusal("malformed-email", f"'{email}' is not an email address",
                      "write it as name@company.example")
    return text.lower()


def _country(country: str) -> str:
    text = str(country or "").strip().upper()
    if not COUNTRY_PATTERN.match(text):
        raise refusal("bad-country", f"'{country}' is not an ISO 3166-1 alpha-2 country code",
                      "use two letters such as US, FR or DE")
    return text


def _badges(badges) -> list[str]:
    if isinstance(badges, str):
        badges = [part for part in badges.split(",")]
    result: list[str] = []
    for badge in badges or []:
        text = str(badge).strip().lower()
        if not BADGE_PATTERN.match(text):
            raise refusal("bad-badge", f"'{badge}' is not a badge id",
                          "badge ids are kebab-case, e.g. power-management")
        if text not in result:
            result.append(text)
    return result


def _company(company: str) -> str:
    text = str(company or "").strip()
    if not text or len(text) > 200:
        raise refusal("bad-company", "a company name is required (at most 200 characters)",
                      "pass --company 'Name of the partner company'")
    return text


def _account(account: str | None) -> str | None:
    if account is None:
        return None
    text = str(account).strip()
    if len(text) > 100:
        raise refusal("bad-purchasing-account", "a purchasing account has at most 100 characters")
    return text or None


def _user_view(row: tables.User) -> User:
    return User(email=row.email, company=row.company, badges=tuple(row.badges), country=row.country,
                purchasing_account=row.purchasing_account, created_at=row.created_at)


def user_row(session: Session, email: str, *, lock: bool = False) -> tables.User:
    """Return the row of the user with EMAIL, or raise `unknown-user`; with LOCK, hold it until commit."""
    key = normalize_email(email)
    query = select(tables.User).where(tables.User.email == key)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    row = session.scalar(query)
    if row is None:
        raise refusal("unknown-user", f"no user '{key}'",
                      f"add the user first: companion users add {key} --company ... --badges ... --country ...")
    return row


def add_user(store: Store, email: str, *, company: str, badges, country: str,
             purchasing_account: str | None = None, actor: str | None = None) -> User:
    """Add a user; the email is unique regardless of case. ACTOR (default: the command line) is journaled."""
    row = tables.User(email=normalize_email(email), company=_company(company), badges=_badges(badges),
                      country=_country(country), purchasing_account=_account(purchasing_account),
                      created_at=utcnow())
    try:
        with store.transaction() as session:
            if session.scalar(select(tables.User.id).where(tables.User.email == row.email)) is not None:
                raise refusal("duplicate-user", f"user '{row.email}' already exists",
                              f"change it with: companion users set {row.email} ...")
            session.add(row)
            journal.record(session, actor, "user-added", row.email, _user_fields(row))
    except IntegrityError:
        raise refusal("duplicate-user", f"user '{row.email}' already exists",
                      f"change it with: companion users set {row.email} ...") from None
    return _user_view(row)


def set_user(store: Store, email: str, *, company: str | None = None, badges=None, country: str | None = None,
             purchasing_account: str | None = _UNSET, actor: str | None = None) -> User:
    """Change the given fields of a user (an empty purchasing account clears it); the change is journaled."""
    with store.transaction() as session:
        row = user_row(session, email, lock=True)
        before = _user_fields(row)
        if company is not None:
            row.company = _company(company)
        if badges is not None:
            row.badges = _badges(badges)
        if country is not None:
            row.country = _country(country)
        if purchasing_account is not _UNSET:
            row.purchasing_account = _account(purchasing_account)
        journal.record(session, actor, "user-changed", row.email, {"before": before, "after": _user_fields(row)})
        return _user_view(row)


def _user_fields(row: tables.User) -> dict:
    """Return what the journal keeps of a user."""
    return {"company": row.company, "badges": list(row.badges), "country": row.country,
            "purchasing_account": row.purchasing_account}


def get_user(store: Store, email: str) -> User:
    """Return the user with EMAIL, or raise `unknown-user`."""
    with store.transaction() as session:
        return _user_view(user_row(session, email))


def list_users(store: Store) -> list[User]:
    """Return every user, by email."""
    with store.transaction() as session:
        return [_user_view(row) for row in session.scalars(select(tables.User).order_by(tables.User.email))]
