"""The Locker page: balances by reference, members, invitations; redeem a code, invite, accept."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, flash, redirect, render_template, request, url_for

from engine import locker
from engine.locker.db import Store
from engine.problem import CompanionError
from web import auth, errors
from web.pages.forms import Messages, once_for_form
from web.state import compiled, store

bp = Blueprint("locker", __name__)


@bp.get("/locker")
@auth.login_required
def locker_page():
    """Show the locker: balances by reference, members, invitations and activations."""
    current = compiled()
    account = auth.current_account()
    view = locker.show_locker(store(), account.email)
    invitations = locker.pending_invitations(store(), account.email)
    references = current.catalog.references if current else {}
    return render_template("locker.html", view=view, invitations=invitations, references=references)


def _locker_action(action: Callable[[Store], object], success: Callable[[object], Messages]):
    """Run a locker form once for what it says (see once_for_form) and go back to the Locker page."""
    try:
        return once_for_form(lambda database: (url_for("locker.locker_page"), success(action(database))),
                             by_content=True)
    except CompanionError as error:
        # Flashed messages live in the session cookie: one echoing a 20,000-character code made it too large
        # for browsers, which then drop the cookie, and with it the message.
        for problem in errors.for_client(error.problems):
            flash(f"{problem.message}" + (f" — {problem.hint}" if problem.hint else ""), "error")
        return redirect(url_for("locker.locker_page"), code=303)


@bp.post("/locker/redeem")
@auth.login_required
def redeem():
    """Redeem a voucher code."""
    email = auth.current_account().email
    return _locker_action(lambda database: locker.redeem(database, email, request.form.get("code", "")),
                          lambda item: [("message", f"Voucher {item.code} redeemed: {item.quantity} x {item.reference} "
                                                 f"(balance {item.balance}).")])


@bp.post("/locker/invite")
@auth.login_required
def invite():
    """Invite a user to share the locker."""
    email = auth.current_account().email

    def done(invitation) -> Messages:
        return [("message", f"Invitation {invitation.id} sent to {invitation.invitee}.")] + \
            [("warning", f"Warning: {warning}") for warning in invitation.warnings]

    return _locker_action(lambda database: locker.invite(database, email, request.form.get("email", "")), done)


@bp.post("/locker/accept")
@auth.login_required
def accept():
    """Accept an invitation to a shared locker."""
    email = auth.current_account().email
    return _locker_action(lambda database: locker.accept(database, email, request.form.get("invitation") or None),
                          lambda result: [("message", f"You now share locker {result.locker.id}.")])
