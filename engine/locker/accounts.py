"""Web accounts: passwords and roles of locker users, and the projects (saved configurations) they keep.

A user (engine.locker.users: email, company, badges, country, purchasing account) signs in to the web app with a
password set by `companion users set-password`. Passwords are hashed with werkzeug.security (scrypt, salted);
only the hash is stored, in the `credentials` table, one row per user, beside the user's role (`partner` or
`product-manager`). A project is a named configuration a user saved; only its owner sees it.
Refusals raise `CompanionError` with a stable code, like engine.locker.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from engine.locker import journal, tables
from engine.locker.db import Store
from engine.locker.tables import MAX_PROJECT_NAME, Credential, ProjectRow, utcnow
from engine.locker.users import User, get_user, normalize_email
from engine.problem import CompanionError, refusal

ROLES = ("partner", "product-manager")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
MAX_PROJECTS = 500
# Checked against when the email is unknown, so that a wrong email costs as much time as a wrong password.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


def _user_id(session, email: str) -> int:
    key = normalize_email(email)
    user_id = session.scalar(select(tables.User.id).where(tables.User.email == key))
    if user_id is None:
        raise refusal("unknown-user", f"no user '{key}'",
                      f"add the user first: companion users add {key} --company ... --badges ... --country ...")
    return user_id


# --- passwords ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """Who signed in: the locker user, their role, and a stamp that changes with the password."""

    user: User
    role: str
    stamp: str  # a short digest of the password hash: sessions and tokens die when the password changes

    @property
    def email(self) -> str:
        """Return the user's email."""
        return self.user.email

    @property
    def is_product_manager(self) -> bool:
        """Return whether the user may see the catalogue's internals."""
        return self.role == "product-manager"


def _stamp(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def check_password_strength(password: str) -> str:
    """Return the password, or raise `weak-password` when it is too short or too long."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise refusal("weak-password", f"a password has at least {MIN_PASSWORD} characters",
                      "use a passphrase of several words")
    if len(password) > MAX_PASSWORD:
        raise refusal("weak-password", f"a password has at most {MAX_PASSWORD} characters")
    return password


def set_password(store: Store, email: str, password: str, role: str | None = None,
                 actor: str | None = None) -> Account:
    """Set (or replace) a user's password, and their role when given; journaled (never the password)."""
    check_password_strength(password)
    if role is not None and role not in ROLES:
        raise refusal("bad-role", f"'{role}' is not a role", "roles: " + ", ".join(ROLES))
    hashed = generate_password_hash(password)
    with store.transaction() as session:
        user_id = _user_id(session, email)
        row = session.get(Credential, user_id)
        if row is None:
            row = Credential(user_id=user_id, password_hash=hashed, role=role or "partner", changed_at=utcnow())
            session.add(row)
        else:
            row.password_hash = hashed
            row.changed_at = utcnow()
            if role is not None:
                row.role = role
        journal.record(session, actor, "password-set", normalize_email(email), {"role": row.role})
    return get_account(store, email)


def set_role(store: Store, email: str, role: str, actor: str | None = None) -> Account:
    """Change the role of a user who already has a password; journaled."""
    if role not in ROLES:
        raise refusal("bad-role", f"'{role}' is not a role", "roles: " + ", ".join(ROLES))
    with store.transaction() as session:
        row = session.get(Credential, _user_id(session, email))
        if row is None:
            raise refusal("no-password", f"{email} has no password yet",
                          f"set one first: companion users set-password {email}")
        before, row.role = row.role, role
        journal.record(session, actor, "role-set", normalize_email(email), {"before": before, "after": role})
    return get_account(store, email)


def get_account(store: Store, email: str) -> Account:
    """Return the account of a user with a password, or raise `unknown-user` / `no-password`."""
    user = get_user(store, email)
    with store.transaction() as session:
        row = session.get(Credential, _user_id(session, user.email))
        if row is None:
            raise refusal("no-password", f"{user.email} has no password yet",
                          f"set one: companion users set-password {user.email}")
        return Account(user, row.role, _stamp(row.password_hash))


def verify_password(store: Store, email: str, password: str) -> Account | None:
    """Return the account when EMAIL and PASSWORD match, else None (same cost for an unknown email)."""
    try:
        key = normalize_email(email)
    except CompanionError:
        check_password_hash(_DUMMY_HASH, str(password))
        return None
    with store.transaction() as session:
        found = session.execute(
            select(Credential.password_hash).join(tables.User, tables.User.id == Credential.user_id).where(tables.User.email == key)
        ).first()
    if found is None:
        check_password_hash(_DUMMY_HASH, str(password))
        return None
    if not isinstance(password, str) or not check_password_hash(found.password_hash, password):
        return None
    return get_account(store, key)


# --- projects ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """A configuration a user saved under a name."""

    id: int
    name: str
    configuration: dict
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict:
        """Return the project as a JSON-ready dict."""
        return {"id": self.id, "name": self.name, "configuration": self.configuration,
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat()}


def _project_view(row: ProjectRow) -> Project:
    return Project(row.id, row.name, dict(row.configuration), row.created_at, row.updated_at)


def _project_name(name: str) -> str:
    text = " ".join(str(name or "").split())
    if not text or len(text) > MAX_PROJECT_NAME:
        raise refusal("bad-name", f"a project name has 1 to {MAX_PROJECT_NAME} characters", path="name")
    return text


def _project_row(session, user_id: int, project_id) -> ProjectRow:
    try:
        key = int(project_id)
    except (TypeError, ValueError):
        key = None
    row = session.get(ProjectRow, key) if key is not None else None
    if row is None or row.user_id != user_id:  # another user's project is as unknown as a missing one
        raise refusal("unknown-project", f"no project {project_id}", "see your projects on the Projects page",
                      path="project")
    return row


def save_project(store: Store, email: str, name: str, configuration: dict, project_id: int | None = None) -> Project:
    """Save a configuration as a new project, or over the user's project PROJECT_ID."""
    name = _project_name(name)
    if not isinstance(configuration, dict):
        raise refusal("bad-configuration", "a project holds a configuration object", path="configuration")
    with store.transaction() as session:
        user_id = _user_id(session, email)
        now = utcnow()
        if project_id is None:
            count = len(session.scalars(select(ProjectRow.id).where(ProjectRow.user_id == user_id)).all())
            if count >= MAX_PROJECTS:
                raise refusal("too-many-projects", f"you have {count} projects", "delete some first")
            row = ProjectRow(user_id=user_id, name=name, configuration=configuration, created_at=now, updated_at=now)
            session.add(row)
        else:
            row = _project_row(session, user_id, project_id)
            row.name, row.configuration, row.updated_at = name, configuration, now
        session.flush()
        journal.record(session, normalize_email(email), "project-saved", normalize_email(email),
                       {"project": row.id, "name": name, "new": project_id is None})
        return _project_view(row)


def list_projects(store: Store, email: str) -> list[Project]:
    """Return the user's projects, most recently changed first."""
    with store.transaction() as session:
        user_id = _user_id(session, email)
        rows = session.scalars(select(ProjectRow).where(ProjectRow.user_id == user_id)
                               .order_by(ProjectRow.updated_at.desc(), ProjectRow.id.desc()))
        return [_project_view(row) for row in rows]


def get_project(store: Store, email: str, project_id) -> Project:
    """Return one of the user's projects, or raise `unknown-project`."""
    with store.transaction() as session:
        return _project_view(_project_row(session, _user_id(session, email), project_id))


def copy_project(store: Store, email: str, project_id, name: str | None = None) -> Project:
    """Save a copy of one of the user's projects under a new name (default: `<name> (copy)`)."""
    original = get_project(store, email, project_id)
    new_name = name or f"{original.name} (copy)"[:MAX_PROJECT_NAME]
    return save_project(store, email, new_name, original.configuration)


def delete_project(store: Store, email: str, project_id) -> None:
    """Delete one of the user's projects."""
    with store.transaction() as session:
        row = _project_row(session, _user_id(session, email), project_id)
        journal.record(session, normalize_email(email), "project-deleted", normalize_email(email),
                       {"project": row.id, "name": row.name, "configuration": row.configuration})
        session.delete(row)
