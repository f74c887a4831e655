"""The Digital Locker's store: an open database whose schema is at the newest Alembic revision.

`open_store(url)` builds the engine (engine.locker.connect: the URL and the transaction discipline), upgrades
the schema (engine.locker.migrations) and returns a `Store`, whose transactions the locker's verbs run in.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from engine.locker.connect import build_engine, default_url
from engine.locker.migrations import upgrade_engine


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
        upgrade_engine(engine)
    return Store(engine)
