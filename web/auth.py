"""Who is asking: the signed-in account of a session cookie or of a bearer token.

Sessions are Flask's signed cookie holding the user's email and the account's stamp (a digest of the
password hash): changing the password signs every session and token out. Bearer tokens for API clients are
signed and time-limited (itsdangerous) and carry the same email and stamp; they are never stored.
"""

from __future__ import annotations

import functools
import time

from flask import abort, current_app, g, redirect, request, session, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from engine.locker import accounts
from engine.problem import CompanionError
from web.state import store

TOKEN_SALT = "companion-api-token"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=TOKEN_SALT)


def issue_token(account: accounts.Account) -> str:
    """Return a bearer token for the account."""
    return _serializer().dumps({"u": account.email, "s": account.stamp})


def bearer() -> str | None:
    """Return the bearer token of the request, if it has one."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def _account_for(email: str, stamp: str) -> accounts.Account | None:
    """Return the account when its stamp still matches; remembered per process for ACCOUNT_CACHE_SECONDS.

    The cache spares two database transactions per API call; a password change (or badges changed with
    `companion users set`) reaches a worker at most ACCOUNT_CACHE_SECONDS later.
    """
    ttl = current_app.config["ACCOUNT_CACHE_SECONDS"]
    cache = current_app.extensions.setdefault("companion.accounts", {})
    now = time.monotonic()
    hit = cache.get(email)
    if hit is not None and hit[1] > now:
        account = hit[0]
    else:
        try:
            account = accounts.get_account(store(), email)
        except CompanionError:
            cache.pop(email, None)
            return None
        if ttl > 0:
            if len(cache) > 10_000:
                cache.clear()
            cache[email] = (account, now + ttl)
    return account if account.stamp == stamp else None


def current_account() -> accounts.Account | None:
    """Return the signed-in account of this request (cookie or bearer token), or None."""
    if "account" in g:
        return g.account
    account = None
    token = bearer()
    if token is not None:
        try:
            data = _serializer().loads(token, max_age=current_app.config["TOKEN_MAX_AGE"])
            account = _account_for(str(data["u"]), str(data["s"]))
        except (BadSignature, KeyError, TypeError):
            account = None
    elif "email" in session:
        account = _account_for(session["email"], session.get("stamp", ""))
        if account is None:
            session.clear()
    g.account = account
    return account


def sign_in(account: accounts.Account) -> None:
    """Start a fresh session for the account (a new session on every sign-in)."""
    session.clear()
    session.permanent = True
    session["email"] = account.email
    session["stamp"] = account.stamp
    g.account = account


def sign_out() -> None:
    """End the session."""
    session.clear()
    g.account = None


def login_required(view):
    """Send anonymous visitors of a page to the sign-in page."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_account() is None:
            return redirect(url_for("signin.signin", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def product_manager_required(view):
    """Pages for product managers only: anonymous visitors sign in, partners get 403."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        account = current_account()
        if account is None:
            return redirect(url_for("signin.signin", next=request.full_path.rstrip("?")))
        if not account.is_product_manager:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def partner_of(account: accounts.Account, catalog) -> dict:
    """Return the request's partner block from the stored user (badges the catalogue does not know dropped)."""
    user = account.user
    partner: dict = {"badges": [badge for badge in user.badges if badge in catalog.badges], "country": user.country}
    if user.purchasing_account:
        partner["purchasing_account"] = user.purchasing_account
    if user.company:
        partner["company"] = user.company
    return partner
