"""The Companion web app: a JSON API (`web.api`) and server-rendered pages (`web.pages`) over the engine.

`create_app(config)` reads its settings from CONFIG (a mapping), then the environment
(COMPANION_DATABASE_URL, COMPANION_RULES_DIR, COMPANION_SECRET_KEY, COMPANION_SECURE_COOKIES, COMPANION_CART_URL,
COMPANION_TIME_ZONE), then defaults: the bundled rules, an SQLite file and a generated secret key, both in the
instance folder, and UTC. `CLOCK` (an engine.clock.Clock) gives the server's date, which dates every debit.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from engine import Clock, DEFAULT_ZONE, TIME_ZONE_VARIABLE, zone
from web import api, errors
from web.live import LiveCatalog
from web.pages import activate, catalogue, checkout, configure, locker, projects, signin, subscriptions
from web.pages import template_globals
from web.state import csrf

SECRET_FILE = "secret_key"
SQLITE_FILE = "companion.sqlite3"
MAX_BODY = 256 * 1024


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def secret_key(instance: Path) -> str:
    """Return the secret key stored in the instance folder, creating it (mode 0600) on first run."""
    path = instance / SECRET_FILE
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker wrote it first
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return key


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings, catalogue, database, security, blueprints and error handlers."""
    config = dict(config or {})
    instance = config.pop("INSTANCE_PATH", None) or os.environ.get("COMPANION_INSTANCE_PATH") or None
    app = Flask(__name__, instance_path=str(Path(instance).resolve()) if instance else None,
                instance_relative_config=True)
    instance_dir = Path(app.instance_path)

    database_url = config.get("DATABASE_URL") or os.environ.get("COMPANION_DATABASE_URL", "").strip() \
        or f"sqlite:///{instance_dir / SQLITE_FILE}"
    rules_dir = config.get("RULES_DIR") or os.environ.get("COMPANION_RULES_DIR", "").strip() or None
    key = config.get("SECRET_KEY") or os.environ.get("COMPANION_SECRET_KEY", "").strip() or secret_key(instance_dir)
    secure = config.get("SESSION_COOKIE_SECURE", _truthy(os.environ.get("COMPANION_SECURE_COOKIES", "")))
    app.config.update(
        SECRET_KEY=key,
        DATABASE_URL=database_url,
        RULES_DIR=rules_dir,
        RELOAD_INTERVAL=1.0,
        MAX_CONTENT_LENGTH=MAX_BODY,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_NAME="companion_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=secure,
        SIGNIN_LIMIT="10 per minute",
        TOKEN_MAX_AGE=8 * 3600,
        ACCOUNT_CACHE_SECONDS=5.0,  # see web.auth: how long a worker trusts an account it looked up
        RATELIMIT_STORAGE_URI="memory://",
        RATELIMIT_HEADERS_ENABLED=True,
        JSON_SORT_KEYS=False,
        CART_URL=os.environ.get("COMPANION_CART_URL", "").strip() or None,  # checkout's cart (engine.services.checkout)
        CHECKOUT_RETRY={},  # keyword arguments of engine.services.checkout.place_order (attempts, timeout, total, ...)
        TIME_ZONE=os.environ.get(TIME_ZONE_VARIABLE, "").strip() or DEFAULT_ZONE,  # the vendor's calendar day
    )
    app.config.update(config)
    app.config.setdefault("CLOCK", Clock(zone(app.config["TIME_ZONE"])))
    app.json.sort_keys = False

    app.extensions["companion.rules"] = LiveCatalog(app.config["RULES_DIR"], app.config["RELOAD_INTERVAL"])
    app.extensions["companion.store"] = None

    csrf.init_app(app)
    limiter = Limiter(get_remote_address, app=app, default_limits=[], storage_uri=app.config["RATELIMIT_STORAGE_URI"])

    for page in (signin, configure, projects, checkout, activate, subscriptions, locker, catalogue):
        app.register_blueprint(page.bp)
    app.context_processor(template_globals)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # the API checks CSRF itself for cookie-authenticated requests (see web/api.py)
    errors.register(app)
    signin.limit(app, limiter)
    api.limit(app, limiter)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        return response

    return app

