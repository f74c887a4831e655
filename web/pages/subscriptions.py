"""Subscriptions: the activations, and an amendment or a renewal of each, previewed at any date, activated today."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from engine import locker
from engine.locker.db import Store
from engine.problem import CompanionError, Problem
from web import auth, inputs, services
from web.pages.forms import UNSIGNED_FIELDS, Messages, new_form_key, not_activated, once_for_form, sent_before
from web.pages.queries import catalogue_or_error
from web.state import store, today

bp = Blueprint("subscriptions", __name__)
KIND_OF = {"amend": "change", "renew": "renewal"}  # a page's action, and the request block it fills


def _change_from(args: MultiDict, kind: str) -> tuple[dict, list[Problem]]:
    change: dict = {}
    problems: list[Problem] = []
    change["date"] = (args.get("date") or today().isoformat()).strip()
    if args.get("tier"):
        change["tier"] = args["tier"]
    for key, minimum in (("devices", 0), ("term_months", 1)) if kind == "renewal" else (("devices", 0),):
        value = (args.get(key) or "").strip()
        if value:
            number = inputs.form_number(value, f"{kind}.{key}", problems, minimum)
            if number is not None:
                change[key] = number
    addon = (args.get("addon") or "").strip()
    if addon:
        quantity = inputs.form_number(args.get("addon_quantity") or "1", f"{kind}.addons[0].quantity", problems, 1)
        if quantity is not None:
            change["addons"] = [{"id": addon, "quantity": quantity}]
    removal = (args.get("remove_addon") or "").strip()
    if removal:
        change["remove_addons"] = [{"id": removal}]  # all of it: the policy says whether that waits for the renewal
    return change, problems


@bp.get("/subscriptions")
@auth.login_required
def subscriptions():
    """List the activations with forms to amend or renew each running subscription."""
    current = catalogue_or_error()
    account = auth.current_account()
    activations = locker.list_activations(store(), account.email)
    parents = {item.parent for item in activations if item.parent}
    return render_template("subscriptions.html", activations=activations, parents=parents, catalog=current.catalog,
                           subscription_of=services.subscription_of)


@bp.get("/subscriptions/<activation_id>/<any(amend, renew):action>")
@auth.login_required
def change_subscription(activation_id: str, action: str):
    """Preview an amendment or a renewal of one activation, at any date of its term."""
    current = catalogue_or_error()
    account = auth.current_account()
    kind = KIND_OF[action]
    try:
        activation = services.find_activation(account.email, activation_id, kind)
    except CompanionError as error:
        if error.problems[0].code != "already-changed":
            raise
        # Back to the preview of a change already activated: shown, with its first key, only to its sender.
        activation = locker.get_activation(store(), account.email, activation_id)
        return _change_page(current, account, activation, action, request.args, superseded=error)
    return _change_page(current, account, activation, action, request.args)


CHANGE_FIELDS = ("tier", "devices", "term_months", "addon", "addon_quantity", "remove_addon")


def _change_page(current, account, activation: locker.Activation, action: str, values: MultiDict,
                 problems: list[Problem] = (), superseded: CompanionError | None = None):
    kind = KIND_OF[action]
    change, unread = _change_from(values, kind)
    problems = list(problems) + unread
    # The date previewed goes with the button: pressed on another day, the months would differ from the quote.
    post_fields = [("date", change["date"])] + [(key, values[key]) for key in CHANGE_FIELDS if values.get(key)]
    sent = sent_before(url_for("subscriptions.change_subscription", activation_id=activation.id, action=action),
                       post_fields)
    if superseded is not None and sent is None:
        raise superseded
    document = {"partner": auth.partner_of(account, current.catalog),
                "subscription": services.subscription_of(activation), kind: change}
    outcome = None
    if not problems:
        try:
            outcome = services.subscription_outcome(current, document, kind, explain=True, activation=activation)
        except CompanionError as error:
            problems = error.problems
    return render_template("change.html", activation=activation, action=action, kind=kind, change=change,
                           outcome=outcome, problems=problems, catalog=current.catalog,
                           subscription=services.subscription_of(activation), values=values,
                           post_fields=post_fields, sent=sent, key=sent.key if sent else new_form_key()), \
        422 if problems else 200


@bp.post("/subscriptions/<activation_id>/<any(amend, renew):action>")
@auth.login_required
def activate_subscription_change(activation_id: str, action: str):
    """Activate an amendment or a renewal today: to the new Activation ID's page, or back with what is missing."""
    current = catalogue_or_error()
    account = auth.current_account()
    kind = KIND_OF[action]
    fields = [(name, value) for name, value in request.form.items(multi=True) if name not in UNSIGNED_FIELDS]
    back = url_for("subscriptions.change_subscription", activation_id=activation_id, action=action) + "?" \
        + urlencode(fields)
    what = "amendment" if action == "amend" else "renewal"

    def work(database: Store) -> tuple[str, Messages]:
        activation = services.find_activation(account.email, activation_id, kind, database=database)
        change, problems = _change_from(request.form, kind)
        if problems:
            raise CompanionError(problems)
        document = {"partner": auth.partner_of(account, current.catalog),
                    "subscription": services.subscription_of(activation), kind: services.dated_today(change, kind)}
        activated = services.activate_subscription_change(database, current, account.email, activation, document,
                                                          kind)
        if not activated["activated"]:
            raise not_activated(activated, back, f"this {what}")
        new_id = activated["activation"]["id"]
        return url_for("activate.activation_page", activation_id=new_id), \
            [("message", f"{what.capitalize()} activated: the new Activation ID is {new_id}.")]

    try:
        return once_for_form(work)
    except CompanionError as error:
        activation = services.find_activation(account.email, activation_id, kind)
        return _change_page(current, account, activation, action, request.form, error.problems)
