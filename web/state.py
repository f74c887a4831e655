"""What every request of the app shares: the database store, the live catalogue, the server's date and CSRF.

The blueprints read these here, never from the `web` package, so `web/__init__` can import its blueprints.
"""

from __future__ import annotations

import os
import threading
from datetime import date

from flask import current_app, g
from flask_wtf.csrf import CSRFProtect

from engine.locker.db import Store, open_store
from web.live import LiveCatalog

csrf = CSRFProtect()
_STORE_LOCK = threading.Lock()


def store() -> Store:
    """Return this process's database store, opened (and migrated) on first use after a fork."""
    app = current_app._get_current_object()
    opened = app.extensions.get("companion.store")
    if opened is None or opened[0] != os.getpid():
        with _STORE_LOCK:
            opened = app.extensions.get("companion.store")
            if opened is None or opened[0] != os.getpid():
                opened = (os.getpid(), open_store(app.config["DATABASE_URL"]))
                app.extensions["companion.store"] = opened
    return opened[1]


def today() -> date:
    """Return the server's date (the vendor's time zone): the day every debit takes effect."""
    return current_app.config["CLOCK"].today()


def live() -> LiveCatalog:
    """Return the app's live catalogue."""
    return current_app.extensions["companion.rules"]


def compiled():
    """Return the catalogue for this request (the same one for the whole request), or None if none loaded."""
    if "compiled" not in g:
        g.compiled = live().current()
    return g.compiled
