"""The JSON API under /api/v1/ (documented by /api/v1/openapi.json, see web/openapi.py).

Authentication: a bearer token (`POST /api/v1/tokens` with email and password) in `Authorization: Bearer
...`, or the browser's session cookie. Cookie-authenticated writes must carry the session's CSRF token in the
`X-CSRFToken` header (pages expose it in `<meta name="csrf-token">`); bearer requests need none, since a
browser never adds that header by itself. The partner of every request is the signed-in user as stored
(badges, country, purchasing account): a `partner` block in a body is ignored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from flask import Blueprint, Response, abort, current_app, jsonify, request, session
from flask_wtf.csrf import generate_csrf

from engine.locker import accounts, idempotency
from engine import locker
from engine import CSV_MEDIA_TYPE, MAX_DEPTH, evaluate, options as list_options, request_from_data, update_guide
from engine.problem import CompanionError, Problem, did_you_mean
from engine.locker.db import Store
from web import auth, inputs, services
from web import errors as web_errors
from web.state import compiled, csrf, live, store
from web.openapi import document as openapi_document

bp = Blueprint("api", __name__, url_prefix="/api/v1")
WRITES = ("POST", "PUT", "PATCH", "DELETE")
PUBLIC = {"api.health", "api.openapi", "api.tokens"}


def limit(app, limiter) -> None:
    """Rate-limit the token endpoint together with the sign-in form (the registered view is wrapped)."""
    view = app.view_functions["api.tokens"]
    app.view_functions["api.tokens"] = limiter.shared_limit(lambda: bp_config("SIGNIN_LIMIT"), scope="signin",
                                                                 methods=["POST"])(view)


def bp_config(key: str):
    """Return a setting of the running app."""
    return current_app.config[key]


def refuse(status: int, code: str, message: str, path: str | None = None, hint: str = ""):
    """Raise an API error now."""
    problems = [Problem(code, message, path=path, hint=hint)] if path is not None else []
    response = jsonify(web_errors.error_body(status, code, message, problems))
    response.status_code = status
    abort(response)


@bp.before_request
def authenticate():
    """Require a signed-in account (except for public endpoints) and CSRF for cookie writes."""
    if request.endpoint in PUBLIC or request.endpoint is None:
        return None
    account = auth.current_account()
    if account is None:
        refuse(401, "unauthenticated", "sign in first: POST /api/v1/tokens, then send Authorization: Bearer <token>")
    if request.method in WRITES and auth.bearer() is None:
        csrf.protect()  # cookie sessions: the X-CSRFToken header must match the session's token
    return None


def body() -> dict:
    """Return the JSON object of the request body, or answer 415/400/422."""
    if not request.is_json:
        refuse(415, "unsupported-media-type", "send the body as JSON (Content-Type: application/json)", path="$")
    try:
        data = inputs.strict_json(request.get_data())
        problem = inputs.json_problem(data, MAX_DEPTH)
    except RecursionError:  # Python's JSON decoder recurses once per level of nesting
        data, problem = None, inputs.too_deep(MAX_DEPTH)
    except inputs.DuplicateKey as error:
        data, problem = None, Problem("duplicate-key", f"key '{inputs.echo(str(error))}' appears twice in one object",
                                      path="$", hint="JSON parsers disagree on which copy counts: send it once")
    if problem is not None:
        refuse(400, problem.code, problem.message, path=problem.path, hint=problem.hint)
    if data is None:
        refuse(400, "bad-json", "the body is not valid JSON", path="$", hint="check quotes, commas and brackets")
    if not isinstance(data, dict):
        refuse(422, "request-shape", "the body must be a JSON object", path="$")
    return data


def only_keys(data: dict, allowed: tuple[str, ...]) -> None:
    """Refuse keys a body does not take, at their JSON path."""
    problems = [Problem("unknown-key", f"unknown key '{key}'", path=str(key), hint="keys: " + ", ".join(allowed))
                for key in data if key not in allowed]
    if problems:
        raise CompanionError(problems)


def catalogue():
    """Return the catalogue of this request, or answer 503 when no rules could ever be loaded."""
    current = compiled()
    if current is None:
        state = live().state
        response = jsonify(web_errors.error_body(503, "no-catalogue", "no rules are loaded",
                                                 state.problems))
        response.status_code = 503
        abort(response)
    return current


def flag(data: dict, key: str) -> bool:
    """Read an optional boolean field."""
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise CompanionError([Problem("request-schema", f"'{key}' must be true or false", path=key)])
    return value


def date_field(data: dict, key: str = "date") -> dt.date | None:
    """Read an optional date field: YYYY-MM-DD in the years 2000 to 2999 (not a week date, not a number)."""
    if data.get(key) is None:
        return None
    return inputs.calendar_date(data[key], key)


def explain_param() -> bool:
    """Read the `explain` query parameter."""
    return request.args.get("explain", "false").lower() in ("1", "true", "yes")


# --- public ------------------------------------------------------------------------------------------


@bp.get("/health")
def health():
    """Report whether rules are loaded, which version, and the state of the last reload."""
    current = live().current()
    state = live().state
    status = "ok" if current is not None and state.ok else ("degraded" if current is not None else "down")
    reload = state.to_json()
    reload["problems"] = [web_errors.problem_json(problem) for problem in state.problems]
    data = {"status": status, "rules_version": current.rules_version if current else None, "reload": reload}
    return jsonify(data), 200 if current is not None else 503


@bp.get("/openapi.json")
def openapi():
    """Return the OpenAPI document of this API."""
    return jsonify(openapi_document())


@bp.post("/tokens")
def tokens():
    """Exchange an email and a password for a bearer token."""
    data = body()
    only_keys(data, ("email", "password"))
    email, password = data.get("email"), data.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        raise CompanionError([Problem("request-schema", "send email and password as strings",
                                      path="email" if not isinstance(email, str) else "password")])
    account = accounts.verify_password(store(), email, password)
    if account is None:
        refuse(401, "bad-credentials", "wrong email or password")
    return jsonify({"token": auth.issue_token(account), "token_type": "Bearer",
                    "expires_in": bp_config("TOKEN_MAX_AGE"), "email": account.email, "role": account.role})


# --- configurations ----------------------------------------------------------------------------------


def configuration_request(data: dict, partial: bool):
    current = catalogue()
    only_keys(data, ("configuration", "date", "partner"))
    partner = auth.partner_of(auth.current_account(), current.catalog)
    document = {"partner": partner, "configuration": data.get("configuration")}
    if data.get("date") is not None:  # a quote for another day: availability windows and date conditions
        document["date"] = date_field(data).isoformat()
    if "configuration" not in data:
        raise CompanionError([Problem("missing", "the body needs 'configuration'", path="configuration",
                                      hint='e.g. {"configuration": {"product": "epo", ...}}')])
    return current, request_from_data(document, current.catalog, partial=partial)


@bp.post("/validate")
def validate():
    """Validate a configuration for the signed-in partner: the verdict (and, with ?explain=true, why)."""
    current, checked = configuration_request(body(), partial=False)
    return jsonify(evaluate(current, checked).to_json(explain_param()))


@bp.post("/options")
def options():
    """List what can still be chosen for a partial configuration, and why not the rest."""
    current, checked = configuration_request(body(), partial=True)
    return jsonify(list_options(current, checked))


@bp.get("/catalogue")
def catalogue_view():
    """Describe the catalogue: products, tiers, upgrade paths, add-ons, badges, each with rule id and place."""
    current = catalogue()
    return jsonify(services.catalogue_json(current.catalog, live().state))


# --- subscriptions -----------------------------------------------------------------------------------


def once(data: dict, work: Callable[[Store], dict], unchanged: Callable[[dict], bool] = lambda answer: False):
    """Answer a state-changing call, once per `Idempotency-Key` header when the client sends one.

    The same key with the same request replays the first answer (header `Idempotent-Replayed: true`) and
    changes nothing; with another request it is refused. An answer UNCHANGED says changed nothing (a
    shortfall) is not remembered, like a refusal: the same key tries again.
    """
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return jsonify(work(store()))
    asked = idempotency.fingerprint(request.method, request.path, request.query_string.decode("latin-1"), data)

    def effect(database: Store) -> idempotency.Answer:
        answer = idempotency.Answer(200, work(database))
        if unchanged(answer.body):
            raise idempotency.Unchanged(answer)
        return answer

    answer = idempotency.once(store(), auth.current_account().email, key, asked, effect)
    response = jsonify(answer.body)
    response.status_code = answer.status
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _subscription_change(kind: str):
    data = body()
    only_keys(data, ("activation_id", "subscription", kind, "partner", "activate"))
    current = catalogue()
    account = auth.current_account()
    activate = flag(data, "activate")
    if ("activation_id" in data) == ("subscription" in data):
        raise CompanionError([Problem("request-shape", "give either 'activation_id' (one of your activations) or "
                                      "'subscription' (its configuration and start)", path="activation_id")])
    if "activation_id" in data and not isinstance(data["activation_id"], str):
        raise CompanionError([Problem("request-schema", "activation_id is a string such as ACT-XXXX-XXXX-XXXX-XXXX",
                                      path="activation_id")])
    if "subscription" in data and activate:
        raise CompanionError([Problem("request-shape", "only an activation of your locker can be activated",
                                      path="activate", hint="send activation_id instead of subscription")])
    change = services.dated_today(data[kind], kind) if activate and kind in data else data.get(kind)

    def work(database: Store) -> dict:
        activation = None
        if "activation_id" in data:
            activation = services.find_activation(account.email, data["activation_id"], kind, path="activation_id",
                                                  database=database)
            subscription = services.subscription_of(activation)
        else:
            subscription = data["subscription"]
        document = {"partner": auth.partner_of(account, current.catalog), "subscription": subscription}
        if change is not None:
            document[kind] = change
        # The debit first: a change dated another day is refused (date-not-today) before anything else is said.
        activated = services.activate_subscription_change(database, current, account.email, activation,
                                                          document, kind) if activate else None
        outcome = services.subscription_outcome(current, document, kind, explain_param(), activation)
        if activated is not None:
            outcome["activation"] = activated
        return outcome

    # A quote changes nothing; an activation that did not happen (refused, short) is not remembered either.
    return once(data, work, lambda answer: not (answer.get("activation") or {}).get("activated"))


@bp.post("/amend")
def amend():
    """Work out a mid-term amendment of a subscription: lines, months and their derivation."""
    return _subscription_change("change")


@bp.post("/renew")
def renew():
    """Work out a renewal of a subscription: the new term and its bill of materials."""
    return _subscription_change("renewal")


# --- the locker --------------------------------------------------------------------------------------


def locker_param(text: str | None) -> int | None:
    """Read the optional `locker_id` query parameter: ASCII digits (a number past MAX_ID is nobody's locker)."""
    if text is None:
        return None
    if not inputs.DIGITS.fullmatch(text):
        raise CompanionError([Problem("request-schema", "locker_id is a whole number written with the digits 0-9",
                                      path="locker_id")])
    number = inputs.record_id(text)
    if number is None:
        raise CompanionError([Problem("forbidden", f"locker {inputs.echo(text)} is not yours", path="locker_id",
                                      hint="you can only see your own locker and the locker shared with you")])
    return number


@bp.get("/locker")
def locker_view():
    """Show the signed-in user's locker (or, with ?locker_id=N, check that N is theirs)."""
    account = auth.current_account()
    view = locker.show_locker(store(), account.email, locker_param(request.args.get("locker_id")))
    data = view.to_json()
    data["invitations"] = [item.to_json() for item in locker.pending_invitations(store(), account.email)]
    return jsonify(data)


@bp.post("/redeem")
def redeem():
    """Redeem a voucher code into the signed-in user's locker."""
    data = body()
    only_keys(data, ("code",))
    code = data.get("code")
    if not isinstance(code, str):
        raise CompanionError([Problem("request-schema", "send the voucher code as a string", path="code")])
    email = auth.current_account().email

    def work(database: Store) -> dict:
        try:
            return locker.redeem(database, email, code).to_json()
        except CompanionError as error:
            raise CompanionError([problem if problem.path else dataclasses.replace(problem, path="code")
                                  for problem in error.problems]) from None

    return once(data, work)


@bp.post("/activate")
def activate():
    """Activate a configuration from the signed-in user's locker: an Activation ID, or the shortfall."""
    data = body()
    only_keys(data, ("configuration", "date", "partner"))
    current = catalogue()
    if not isinstance(data.get("configuration"), dict):
        raise CompanionError([Problem("missing", "the body needs a 'configuration' object", path="configuration")])
    on = date_field(data)
    email = auth.current_account().email
    return once(data, lambda database: services.activate(database, current, email, data["configuration"], on),
                lambda answer: not answer.get("activated"))


@bp.get("/session")
def session_info():
    """Return who is signed in and the CSRF token for cookie-authenticated writes."""
    account = auth.current_account()
    data = {"email": account.email, "role": account.role, "badges": list(account.user.badges),
            "country": account.user.country, "purchasing_account": account.user.purchasing_account}
    if "email" in session:
        data["csrf_token"] = generate_csrf()
    return jsonify(data)


# --- bills of materials, channels, licence-update guidance -------------------------------------------------


def csv_file(data: bytes, name: str) -> Response:
    """Answer with a CSV file as an attachment."""
    response = Response(data, content_type=CSV_MEDIA_TYPE)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def template_param(value) -> str | None:
    """Read the optional template id (absent: the partner's recommended template)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CompanionError([Problem("request-schema", "template is a template id such as generic", path="template")])
    return value.strip()


@bp.get("/projects/<project_id>/bom.csv")
def project_bom(project_id: str):
    """Download a saved project's bill of materials as CSV in one of the partner's templates."""
    current = catalogue()
    account = auth.current_account()
    project = accounts.get_project(store(), account.email, inputs.project_id(project_id))
    data, name = services.project_bom(current, account, project, template_param(request.args.get("template")))
    return csv_file(data, name)


@bp.post("/bom")
def bom():
    """Return the bill of materials of a configuration as CSV in one of the partner's templates."""
    data = body()
    only_keys(data, ("configuration", "template", "partner"))
    current = catalogue()
    if not isinstance(data.get("configuration"), dict):
        raise CompanionError([Problem("missing", "the body needs a 'configuration' object", path="configuration")])
    csv_data, name = services.configuration_bom(current, auth.current_account(), data["configuration"],
                                                template_param(data.get("template")))
    return csv_file(csv_data, name)


def product_param(current, required: bool) -> str | None:
    """Read the `product` query parameter: a product of the catalogue."""
    product = request.args.get("product")
    if product is None or product == "":
        if required:
            raise CompanionError([Problem("missing", "give the product, e.g. ?product=epo", path="product")])
        return None
    if product not in current.catalog.products:
        raise CompanionError([Problem("unknown-ref", f"unknown product '{product}'", path="product",
                                      hint=did_you_mean(product, current.catalog.products)
                                      or "products: " + ", ".join(current.catalog.products))])
    return product


@bp.get("/channels")
def channels_view():
    """The export templates (recommended first), the hidden ones and why, and whether checkout is open to you."""
    current = catalogue()
    product = product_param(current, required=False)
    offer = services.offer(current, auth.current_account(), product)
    if offer is None:
        raise CompanionError([Problem("no-exports", "these rules declare no export templates", path="product")])
    return jsonify(offer)


@bp.get("/update-guide")
def update_guide_view():
    """The steps that update an installed product version after an activation, amendment or renewal."""
    current = catalogue()
    product = product_param(current, required=True)
    mode = request.args.get("mode")
    if not mode:
        raise CompanionError([Problem("missing", "give the mode: online or offline", path="mode")])
    guide = update_guide(current.catalog, product, request.args.get("version") or None, mode,
                         request.args.get("event") or "amendment", request.args.get("activation_id") or None)
    return jsonify(guide)
