"""The pages: sign in, Configure, Projects, Subscriptions, Locker, Activate, and the product managers' Catalogue.

Pages are server-rendered; a configuration travels in the query string (`?product=epo&tier=advanced&addon=...`)
so that every state of the Configure page is a link, and every change is a GET that the engine answers
again. Writes are POST forms with a CSRF token and an idempotency key; each answers with a redirect to a page
that shows the stored result (POST, redirect, GET), so a refresh never sends the form again, and a form sent
twice (back, then submit) has one effect and shows the first result.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from engine.locker import accounts, idempotency
from engine import locker
from engine.activation import matching, requirements_of
from engine.services.checkout import CheckoutFailed, CheckoutRefused, cart_url_from
from engine.services.exports import CSV_MEDIA_TYPE
from engine.inference.evaluate import evaluate
from engine.catalogue.model import PERPETUAL
from engine.inference.options import options as list_options
from engine.problem import CompanionError, Problem
from engine.inference.request import request_from_data
from engine.catalogue.source import MAX_DEPTH
from engine.locker.db import Store
from web import auth, errors, inputs, orders, services
from web.state import compiled, live, store, today
from web.diagram import upgrade_diagram

bp = Blueprint("ui", __name__)
CONFIG_KEYS = ("product", "version", "license", "term_months", "tier", "devices")


def limit(app, limiter) -> None:
    """Rate-limit sign-in attempts per client address (the registered view is wrapped)."""
    view = app.view_functions["ui.signin"]
    app.view_functions["ui.signin"] = limiter.shared_limit(lambda: current_app.config["SIGNIN_LIMIT"], scope="signin",
                                                             methods=["POST"])(view)


@bp.app_context_processor
def globals_for_templates():
    """Give every template the signed-in account, a maker of form keys and the server's date."""
    return {"account": auth.current_account(), "form_key": new_form_key, "today": today().isoformat()}


# --- forms that change state: once, then a redirect ----------------------------------------------------

UNSIGNED_FIELDS = ("csrf_token", "idempotency_key")
KIND_OF = {"amend": "change", "renew": "renewal"}  # a page's action, and the request block it fills
Messages = list[tuple[str, str]]


def new_form_key() -> str:
    """Return a fresh idempotency key for a form being rendered."""
    return secrets.token_urlsafe(18)


def unchanged(location: str, messages: Messages) -> idempotency.Unchanged:
    """Return the signal that a form changed nothing (short of vouchers, say): go to LOCATION, keep nothing."""
    return idempotency.Unchanged(idempotency.Answer(303, {"location": location, "messages": messages}))


def form_fingerprint(path: str, fields) -> str:
    """Return what a form posting FIELDS (name, value pairs; the key and CSRF token left out) to PATH asks."""
    return idempotency.fingerprint("form", path, sorted((name, value) for name, value in fields
                                                        if name not in UNSIGNED_FIELDS))


def form_prefix(asked: str) -> str:
    """Return the start of the idempotency keys of forms asking ASKED."""
    return f"form:{asked[:16]}:"


@dataclasses.dataclass(frozen=True)
class SentBefore:
    """A form shown again that was already sent: its key (sending it again replays) and where its result is."""

    key: str
    location: str


def sent_before(path: str, fields) -> SentBefore | None:
    """Return the earlier sending of the form PATH with FIELDS by this user, if its result is still kept.

    Back does not always show the page the browser had: it may fetch it again, and a new key would make the
    same click a new request. A form found already sent keeps its first key, so sending it replays.
    """
    asked = form_fingerprint(path, fields)
    found = idempotency.earlier(store(), auth.current_account().email, form_prefix(asked), asked)
    if found is None:
        return None
    key, answer = found
    return SentBefore(key[len(form_prefix(asked)):], answer.body["location"])


def once_for_form(work: Callable[[Store], tuple[str, Messages]], by_content: bool = False):
    """Run a form's effect once per rendered form and answer with a redirect to its result.

    WORK returns the result page and the messages to show there. The same form sent again (a resubmission
    after Back, a double click) finds the stored result and changes nothing; a form sent back with other
    values is a new request. BY_CONTENT: the values alone make the request (a voucher code, an invitation
    redeem or accept once however often the form is shown). Refusals raise CompanionError and are not stored.
    """
    asked = form_fingerprint(request.path, request.form.items(multi=True))
    key = "content" if by_content else request.form.get("idempotency_key") or ""
    if not idempotency.KEY_PATTERN.match(key) or len(key) > 200:
        key = new_form_key()  # a form rendered before keys existed: it still works, once

    def effect(database: Store) -> idempotency.Answer:
        location, messages = work(database)
        return idempotency.Answer(303, {"location": location, "messages": messages})

    answer = idempotency.once(store(), auth.current_account().email, form_prefix(asked) + key, asked, effect)
    if answer.replayed:
        flash("You had sent this form already: nothing was done a second time. This is its result.", "info")
    for category, text in answer.body["messages"]:
        flash(text, category)
    return redirect(answer.body["location"], code=303)


def catalogue_or_error():
    """Return the catalogue in use; without one, a page says why."""
    current = compiled()
    if current is None:
        raise CompanionError(live().state.problems or [Problem("no-catalogue", "no rules are loaded")])
    return current


# --- configurations in query strings -----------------------------------------------------------------


def configuration_from(args: MultiDict) -> tuple[dict, list[Problem]]:
    """Read a (partial) configuration from form fields; numbers that are not numbers become problems."""
    configuration: dict = {}
    problems: list[Problem] = []
    for key in ("product", "version", "license", "tier"):
        value = (args.get(key) or "").strip()
        if value:
            configuration[key] = value
    if args.get("prev_product") and args.get("prev_product") != configuration.get("product"):
        return {"product": configuration["product"]} if "product" in configuration else {}, problems
    for key, minimum in (("term_months", 1), ("devices", 0)):
        value = (args.get(key) or "").strip()
        if value:
            number = inputs.form_number(value, f"configuration.{key}", problems, minimum)
            if number is not None:
                configuration[key] = number
    if configuration.get("license") == PERPETUAL:
        configuration.pop("term_months", None)
    addons = []
    for addon_id in args.getlist("addon"):
        addon_id = addon_id.strip()
        if not addon_id or any(item["id"] == addon_id for item in addons):
            continue
        quantity = inputs.form_number(args.get(f"qty-{addon_id}") or "1",
                                      f"configuration.addons[{len(addons)}].quantity", problems, 1)
        if quantity is not None:
            addons.append({"id": addon_id, "quantity": quantity})
    if addons:
        configuration["addons"] = addons
    return configuration, problems


def query_of(configuration: dict, **extra) -> str:
    """Return the query string of a configuration (the inverse of configuration_from)."""
    pairs = [(key, configuration[key]) for key in CONFIG_KEYS if configuration.get(key) not in (None, "")]
    for addon in configuration.get("addons", ()):
        pairs.append(("addon", addon["id"]))
        pairs.append((f"qty-{addon['id']}", addon.get("quantity", 1)))
    pairs.extend((key, value) for key, value in extra.items() if value is not None)
    return urlencode(pairs)


def is_complete(configuration: dict) -> bool:
    """Return whether the configuration names everything a verdict needs."""
    base = all(configuration.get(key) for key in ("product", "license", "tier"))
    return base and (configuration.get("license") == PERPETUAL or bool(configuration.get("term_months")))


def safe_next(target: str | None) -> str:
    """Return a same-site path to go to after signing in (never another host)."""
    if not target:
        return url_for("ui.configure")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("ui.configure")
    return target


# --- sign in -----------------------------------------------------------------------------------------


@bp.get("/")
def index():
    """Send people to Configure, or to sign in."""
    return redirect(url_for("ui.configure"))


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
    return redirect(url_for("ui.signin"))


# --- Configure ---------------------------------------------------------------------------------------


def guidance(current, account, configuration: dict) -> dict:
    """Ask the engine what can still be chosen, and, for a complete configuration, its explained verdict."""
    document = {"partner": auth.partner_of(account, current.catalog), "configuration": configuration}
    result = {"options": None, "verdict": None, "problems": []}
    try:
        request_ = request_from_data(document, current.catalog, partial=True)
        result["options"] = list_options(current, request_)
        if is_complete(configuration):
            full = request_from_data(document, current.catalog)
            result["verdict"] = evaluate(current, full).to_json(explain_rules=True)
    except CompanionError as error:
        result["problems"] = error.problems
    return result


@bp.get("/configure")
@auth.login_required
def configure():
    """Build a configuration step by step: only allowed choices, the others with their reasons, and the verdict."""
    current = catalogue_or_error()
    account = auth.current_account()
    configuration, problems = configuration_from(request.args)
    result = guidance(current, account, configuration)
    if problems:  # a field could not be read: no verdict (and no Save or Activate) for what was not asked for
        result["verdict"] = None
    project = None
    if request.args.get("project"):
        project = accounts.get_project(store(), account.email, inputs.project_id(request.args["project"], "project"))
    product = current.catalog.products.get(configuration.get("product", ""))
    exports_offer = None
    if project is not None and result["verdict"] and result["verdict"]["valid"]:
        exports_offer = services.offer(current, account, configuration.get("product"))
    return render_template("configure.html", configuration=configuration, problems=problems + result["problems"],
                           options=result["options"], verdict=result["verdict"], catalog=current.catalog,
                           product=product, complete=is_complete(configuration), project=project,
                           query=query_of(configuration), configuration_json=json.dumps(configuration),
                           exports_offer=exports_offer,
                           project_unchanged=project is not None and project.configuration == configuration), \
        422 if problems or result["problems"] else 200


# --- Projects ----------------------------------------------------------------------------------------


def _posted_configuration() -> dict:
    """Read the configuration a form posts as JSON, or refuse it at its path."""
    try:
        configuration = json.loads(request.form.get("configuration") or "{}")
        problem = inputs.json_problem(configuration, MAX_DEPTH, "the configuration", ("configuration",))
    except RecursionError:  # Python's JSON decoder recurses once per level of nesting
        configuration, problem = None, inputs.too_deep(MAX_DEPTH, "the configuration", ("configuration",))
    except ValueError:
        configuration, problem = None, None
    if problem is not None:
        raise CompanionError([problem])
    if not isinstance(configuration, dict):
        raise CompanionError([Problem("bad-configuration", "the configuration sent is not a JSON object",
                                      path="configuration")])
    problems = services.configuration_problems(configuration)
    if problems:  # a malformed project would break the Projects page on every visit
        raise CompanionError(problems)
    return configuration


@bp.get("/projects")
@auth.login_required
def projects():
    """List the saved projects."""
    account = auth.current_account()
    items = accounts.list_projects(store(), account.email)
    current = compiled()
    malformed = {project.id: services.configuration_problems(project.configuration) for project in items}
    offers = {project.id: services.offer(current, account, project.configuration.get("product"))
              for project in items if not malformed[project.id]}
    checkout_decision = next((item["checkout"] for item in offers.values() if item), None)
    return render_template("projects.html", projects=items, query_of=query_of, offers=offers, malformed=malformed,
                           checkout_decision=checkout_decision, orders=orders.of_projects(store(), account.email))


@bp.post("/projects")
@auth.login_required
def save_project():
    """Save the configuration as a new project, or over an existing one."""
    configuration = _posted_configuration()
    project_id = inputs.project_id(request.form.get("project"), "project") if request.form.get("action") == "update" \
        else None

    def work(database: Store) -> tuple[str, Messages]:
        project = accounts.save_project(database, auth.current_account().email, request.form.get("name", ""),
                                        configuration, project_id)
        return url_for("ui.configure") + "?" + query_of(project.configuration, project=project.id), \
            [("message", f"Project “{project.name}” saved.")]

    return once_for_form(work)


@bp.get("/projects/<project_id>")
@auth.login_required
def open_project(project_id: str):
    """Reopen a project on the Configure page."""
    project = accounts.get_project(store(), auth.current_account().email, inputs.project_id(project_id))
    configuration = services.stored_configuration(project)
    return redirect(url_for("ui.configure") + "?" + query_of(configuration, project=project.id))


@bp.post("/projects/<project_id>/copy")
@auth.login_required
def copy_project(project_id: str):
    """Copy a project."""
    email, number = auth.current_account().email, inputs.project_id(project_id)

    def work(database: Store) -> tuple[str, Messages]:
        services.stored_configuration(accounts.get_project(database, email, number))  # a malformed one is not copied
        copy = accounts.copy_project(database, email, number)
        return url_for("ui.projects"), [("message", f"Copied as “{copy.name}”.")]

    return once_for_form(work)


@bp.post("/projects/<project_id>/delete")
@auth.login_required
def delete_project(project_id: str):
    """Delete a project."""
    email, number = auth.current_account().email, inputs.project_id(project_id)

    def work(database: Store) -> tuple[str, Messages]:
        accounts.delete_project(database, email, number)
        return url_for("ui.projects"), [("message", "Project deleted.")]

    return once_for_form(work)


@bp.get("/projects/<project_id>/bom.csv")
@auth.login_required
def project_bom(project_id: str):
    """Download a saved project's bill of materials as CSV in one of the partner's templates (?template=ID)."""
    current = catalogue_or_error()
    account = auth.current_account()
    project = accounts.get_project(store(), account.email, inputs.project_id(project_id))
    data, name = services.project_bom(current, account, project, request.args.get("template"))
    return csv_response(data, name)


def csv_response(data: bytes, name: str) -> Response:
    """Answer with a CSV file as an attachment."""
    response = Response(data, mimetype=None, content_type=CSV_MEDIA_TYPE)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


# --- Checkout ----------------------------------------------------------------------------------------


def _checkout_page(current, account, project, failure: CheckoutFailed | None = None, status: int = 200):
    """Render the review page: the order to confirm, the stored confirmation, or why checkout is refused."""
    order = placed = None
    problems: list[Problem] = []
    refused = None
    try:
        order = services.prepare_checkout(current, account, project)
    except CheckoutRefused as error:
        refused = error.problems[0].message
        status = 403
    except CompanionError as error:
        problems = error.problems
        status = 422
    cart_problems: list[Problem] = []
    if order is not None:
        placed = orders.find(store(), account.email, project.id, order.idempotency_key)
        try:
            cart_url = cart_url_from(current_app.config.get("CART_URL") or None)
        except CompanionError as error:
            cart_url, cart_problems = None, error.problems
    else:
        cart_url = None
    offer = services.offer(current, account, project.configuration.get("product")) if refused else None
    return render_template("checkout.html", project=project, order=order, placed=placed, refused=refused,
                           problems=problems + cart_problems, cart_url=cart_url, failure=failure, offer=offer,
                           payload_json=json.dumps(order.payload, indent=2, ensure_ascii=False) if order else "",
                           history=orders.of_projects(store(), account.email).get(project.id, [])), status


@bp.get("/projects/<project_id>/checkout")
@auth.login_required
def checkout_review(project_id: str):
    """Review a project's order before confirming it: the bill of materials and what will be sent to the cart."""
    current = catalogue_or_error()
    account = auth.current_account()
    project = accounts.get_project(store(), account.email, inputs.project_id(project_id))
    return _checkout_page(current, account, project)


@bp.post("/projects/<project_id>/checkout")
@auth.login_required
def checkout_confirm(project_id: str):
    """Place the reviewed order with the vendor's cart and store its confirmation number with the project.

    The order is sent with its idempotency key even when this project already has a confirmation for it (a
    second press of the button, a retry): the cart answers with the first confirmation, and it is stored once.
    """
    current = catalogue_or_error()
    account = auth.current_account()
    project = accounts.get_project(store(), account.email, inputs.project_id(project_id))
    try:
        order = services.prepare_checkout(current, account, project)
    except CompanionError:
        return _checkout_page(current, account, project)
    if request.form.get("idempotency_key") != order.idempotency_key:
        flash("The order changed since you reviewed it (the project or the rules changed). Check it again, then "
              "confirm.", "warning")
        return redirect(url_for("ui.checkout_review", project_id=project.id), code=303)
    try:
        confirmation = services.place_checkout(order, current_app.config.get("CART_URL"),
                                               dict(current_app.config.get("CHECKOUT_RETRY") or {}))
    except CheckoutFailed as failure:
        return _checkout_page(current, account, project, failure=failure, status=502)
    placed = orders.record(store(), account.email, project, order, confirmation)
    flash(f"Order placed: confirmation number {placed.confirmation}.")
    return redirect(url_for("ui.checkout_review", project_id=project.id), code=303)


# --- Activate ---------------------------------------------------------------------------------------


def coverage_preview(current, verdict: dict | None, balances: dict) -> dict | None:
    """Return how the locker would cover a valid configuration now (nothing is debited), or None."""
    if not verdict or not verdict["valid"] or not verdict.get("bom"):
        return None
    return locker.cover(requirements_of(verdict["bom"]), balances, matching(current.catalog)).to_json()


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
    verdict = None
    if complete:
        result = guidance(current, account, configuration)
        verdict = result["verdict"]
        if result["problems"]:  # e.g. an unknown tier: say so, offer no button
            problems, complete = problems + result["problems"], False
    view = locker.show_locker(store(), account.email)
    configuration_json = json.dumps(configuration)
    sent = sent_before(url_for("ui.activate"), [("configuration", configuration_json)]) if complete else None
    return render_template("activate.html", configuration=configuration, problems=problems, verdict=verdict,
                           coverage=coverage_preview(current, verdict, view.balances),
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
    configuration = _posted_configuration()
    back = url_for("ui.activate") + "?" + query_of(configuration)

    def work(database: Store) -> tuple[str, Messages]:
        requested = inputs.calendar_date(request.form["date"]) if request.form.get("date") else None
        outcome = services.activate(database, current, account.email, configuration, requested)
        if outcome["activated"]:
            activation_id = outcome["activation"]["id"]
            return url_for("ui.activation_page", activation_id=activation_id), \
                [("message", f"Activated: your Activation ID is {activation_id}.")]
        raise not_activated(outcome, back, "this configuration")

    try:
        return once_for_form(work)
    except CompanionError as error:
        return _activate_page(current, account, configuration, error.problems)


def not_activated(outcome: dict, back: str, what: str) -> idempotency.Unchanged:
    """Return the signal that OUTCOME activated nothing, saying why on the page BACK: short, or refused."""
    if outcome.get("shortfall"):
        missing = ", ".join(f"{count} × {reference}" for reference, count in outcome["shortfall"]["missing"].items())
        return unchanged(back, [("error", f"Not activated: your locker is short of {missing}. Nothing was used.")])
    return unchanged(back, [("error", f"Not activated: the rules refuse {what}. Nothing was used.")])


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


# --- Subscriptions -----------------------------------------------------------------------------------


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


CHANGE_FIELDS = ("tier", "devices", "term_months", "addon", "addon_quantity")


def _change_page(current, account, activation: locker.Activation, action: str, values: MultiDict,
                 problems: list[Problem] = (), superseded: CompanionError | None = None):
    kind = KIND_OF[action]
    change, unread = _change_from(values, kind)
    problems = list(problems) + unread
    # The date previewed goes with the button: pressed on another day, the months would differ from the quote.
    post_fields = [("date", change["date"])] + [(key, values[key]) for key in CHANGE_FIELDS if values.get(key)]
    sent = sent_before(url_for("ui.change_subscription", activation_id=activation.id, action=action), post_fields)
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
    back = url_for("ui.change_subscription", activation_id=activation_id, action=action) + "?" + urlencode(fields)
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
        return url_for("ui.activation_page", activation_id=new_id), \
            [("message", f"{what.capitalize()} activated: the new Activation ID is {new_id}.")]

    try:
        return once_for_form(work)
    except CompanionError as error:
        activation = services.find_activation(account.email, activation_id, kind)
        return _change_page(current, account, activation, action, request.form, error.problems)


# --- Locker ------------------------------------------------------------------------------------------


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
        return once_for_form(lambda database: (url_for("ui.locker_page"), success(action(database))),
                             by_content=True)
    except CompanionError as error:
        # Flashed messages live in the session cookie: one echoing a 20,000-character code made it too large
        # for browsers, which then drop the cookie, and with it the message.
        for problem in errors.for_client(error.problems):
            flash(f"{problem.message}" + (f" — {problem.hint}" if problem.hint else ""), "error")
        return redirect(url_for("ui.locker_page"), code=303)


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


# --- Catalogue (product managers) --------------------------------------------------------------------


@bp.get("/catalogue")
@auth.product_manager_required
def catalogue():
    """Show products, tiers, upgrade paths, add-ons and badges with rule ids and places; the last reload."""
    current = compiled()
    state = live().state
    data = services.catalogue_json(current.catalog, state) if current else None
    diagrams = {product.id: upgrade_diagram(product) for product in current.catalog.products.values()} \
        if current else {}
    return render_template("catalogue.html", data=data, state=state, diagrams=diagrams, rules_dir=live().rules_dir)


@bp.post("/catalogue/reload")
@auth.product_manager_required
def reload_rules():
    """Check the rule files now instead of waiting for the next request."""
    live().check_now()
    flash("Rule files checked." if live().state.ok else "The rule files do not load; the last good catalogue stays.",
          "info" if live().state.ok else "error")
    return redirect(url_for("ui.catalogue"))
