"""Activate: what a configuration would use from the locker, the button that does it, each Activation ID's page."""

from __future__ import annotations

import json

from flask import Blueprint, render_template, request, url_for

from engine import locker
from engine import cover, matching, requirements_of
from engine.locker.db import Store
from engine.problem import CompanionError, Problem
from web import auth, inputs, services
from web.pages.forms import Messages, new_form_key, not_activated, once_for_form, posted_configuration, sent_before
from web.pages.queries import catalogue_or_error, configuration_from, guidance, is_complete, query_of
from web.state import store

bp = Blueprint("activate", __name__)


def coverage_preview(current, verdict: dict | None, balances: dict, facts: dict | None = None) -> dict | None:
    """Return how the locker would cover a valid configuration now (nothing is debited), or None."""
    if not verdict or not verdict["valid"] or not verdict.get("bom"):
        return None
    table = matching(current.catalog).applying_to(facts)  # the voucher matches this activation may use
    return cover(requirements_of(verdict["bom"]), balances, table).to_json()


@bp.get("/activate")
@auth.login_required
def activate():
    """Show what activating a configuration from the locker would use, with the button that does it."""
    current = catalogue_or_error()
    account = auth.current_account()
    configuration, problems = configuration_from(request.args)
    return _activate_page(current, account, configuration, problems)


def _activate_page(current, account, configuration: dict, problems: list[Problem]):
    # A field of the query that could not be read leaves nothing to activate, as on Configure.
    complete = is_complete(configuration) and not problems
    verdict = facts = None
    if complete:
        result = guidance(current, account, configuration)
        verdict, facts = result["verdict"], result["facts"]
        if result["problems"]:  # e.g. an unknown tier: say so, offer no button
            problems, complete = problems + result["problems"], False
    view = locker.show_locker(store(), account.email)
    configuration_json = json.dumps(configuration)
    sent = sent_before(url_for("activate.activate"), [("configuration", configuration_json)]) if complete else None
    return render_template("activate.html", configuration=configuration, problems=problems, verdict=verdict,
                           coverage=coverage_preview(current, verdict, view.balances, facts),
                           balances=view.balances, catalog=current.catalog, complete=complete,
                           query=query_of(configuration), configuration_json=configuration_json, sent=sent,
                           key=sent.key if sent else new_form_key()), \
        422 if problems else 200


@bp.post("/activate")
@auth.login_required
def activate_from_locker():
    """Activate a configuration from the locker today: to its Activation ID's page, or back with what is missing."""
    current = catalogue_or_error()
    account = auth.current_account()
    configuration = posted_configuration()
    back = url_for("activate.activate") + "?" + query_of(configuration)

    def work(database: Store) -> tuple[str, Messages]:
        requested = inputs.calendar_date(request.form["date"]) if request.form.get("date") else None
        outcome = services.activate(database, current, account.email, configuration, requested)
        if outcome["activated"]:
            activation_id = outcome["activation"]["id"]
            return url_for("activate.activation_page", activation_id=activation_id), \
                [("message", f"Activated: your Activation ID is {activation_id}.")]
        raise not_activated(outcome, back, "this configuration")

    try:
        return once_for_form(work)
    except CompanionError as error:
        return _activate_page(current, account, configuration, error.problems)


@bp.get("/activations/<activation_id>")
@auth.login_required
def activation_page(activation_id: str):
    """The page of one Activation ID: what it activated, the vouchers it used, and how to update the licence."""
    current = catalogue_or_error()
    account = auth.current_account()
    activation = locker.get_activation(store(), account.email, activation_id)
    configuration = dict(activation.configuration)
    # An amendment or a renewal updates the licence the installed system already holds: its steps name it.
    guides = services.update_guides(current.catalog, configuration.get("product"), configuration.get("version"),
                                    activation.kind, activation.parent or activation.id)
    return render_template("activation.html", activation=activation, configuration=configuration, guides=guides)
