"""Helpers of the web tests: users, apps on temporary databases, CSRF tokens, signing in, tokens, vouchers."""

from __future__ import annotations

import re
from pathlib import Path

from engine.locker import accounts
from engine import locker
from web import create_app

PASSWORD = "correct horse battery staple"
PARTNER = "partner@integrator.example"
OTHER = "other@elsewhere.example"
EBO_PARTNER = "ebo@integrator.example"
MANAGER = "pm@vendor.example"
NO_PASSWORD = "nopassword@integrator.example"


def make_app(tmp: Path, **config):
    """Build an app on a fresh SQLite file in TMP."""
    settings = {"INSTANCE_PATH": str(tmp / "instance"), "DATABASE_URL": f"sqlite:///{tmp / 'web.sqlite3'}",
                "SECRET_KEY": "test-secret", "SIGNIN_LIMIT": "1000 per minute",
                "ACCOUNT_CACHE_SECONDS": 0}
    settings.update(config)
    return create_app(settings)


def seed_users(app) -> None:
    """Add the test users and their passwords."""
    from web.state import store

    with app.app_context():
        db = store()
        for email, badges, role in ((PARTNER, ["power-management"], "partner"),
                                    (OTHER, ["power-management"], "partner"),
                                    (EBO_PARTNER, ["building-automation"], "partner"),
                                    (MANAGER, [], "product-manager")):
            locker.add_user(db, email, company="Test", badges=badges, country="US")
            accounts.set_password(db, email, PASSWORD, role)
        locker.add_user(db, NO_PASSWORD, company="Test", badges=["power-management"], country="FR")



def csrf_of(html: str) -> str:
    """Return the CSRF token of a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(r'name="csrf-token" content="([^"]+)"',
                                                                             html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client, email: str = PARTNER, password: str = PASSWORD):
    """Sign a test client in through the form; return the response."""
    token = csrf_of(client.get("/signin").text)
    return client.post("/signin", data={"email": email, "password": password, "csrf_token": token})


def token_for(client, email: str = PARTNER) -> dict:
    """Return the Authorization header of a bearer token for EMAIL."""
    response = client.post("/api/v1/tokens", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.json
    return {"Authorization": f"Bearer {response.json['token']}"}


def issue(app, reference: str, quantity: int, count: int = 1) -> list[str]:
    """Issue voucher codes in the app's database."""
    from web.state import store

    with app.app_context():
        return locker.issue_vouchers(store(), reference, quantity, count)
