"""Sign in and sign out (the sign-in form is rate-limited per client address)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from engine.locker import accounts
from web import auth
from web.state import store

bp = Blueprint("signin", __name__)


def limit(app, limiter) -> None:
    """Rate-limit sign-in attempts per client address (the registered view is wrapped)."""
    view = app.view_functions["signin.signin"]
    app.view_functions["signin.signin"] = limiter.shared_limit(lambda: current_app.config["SIGNIN_LIMIT"],
                                                               scope="signin", methods=["POST"])(view)


def safe_next(target: str | None) -> str:
    """Return a same-site path to go to after signing in (never another host)."""
    if not target:
        return url_for("configure.configure")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("configure.configure")
    return target


@bp.get("/")
def index():
    """Send people to Configure, or to sign in."""
    return redirect(url_for("configure.configure"))


@bp.route("/signin", methods=["GET", "POST"])
def signin():
    """Sign in with email and password."""
    error = None
    email = ""
    if request.method == "POST":
        email = (request.form.get("email") or "").strip()
        account = accounts.verify_password(store(), email, request.form.get("password") or "")
        if account is not None:
            auth.sign_in(account)
            return redirect(safe_next(request.form.get("next")))
        error = "Wrong email or password."
    return render_template("signin.html", error=error, email=email, next=request.values.get("next", "")), \
        (401 if error else 200)


@bp.post("/signout")
def signout():
    """Sign out."""
    auth.sign_out()
    flash("You are signed out.")
    return redirect(url_for("signin.signin"))
