"""Configurations in query strings (`?product=epo&tier=advanced&addon=...`), and what the engine says of one.

Every state of the Configure page is a link, and every change is a GET that the engine answers again.
"""

from __future__ import annotations

from urllib.parse import urlencode

from werkzeug.datastructures import MultiDict

from engine import PERPETUAL, evaluate, options as list_options, request_from_data
from engine.problem import CompanionError, Problem
from web import auth, inputs
from web.state import compiled, live

CONFIG_KEYS = ("product", "version", "license", "term_months", "tier", "devices")


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


def catalogue_or_error():
    """Return the catalogue in use; without one, a page says why."""
    current = compiled()
    if current is None:
        raise CompanionError(live().state.problems or [Problem("no-catalogue", "no rules are loaded")])
    return current


def guidance(current, account, configuration: dict) -> dict:
    """Ask the engine what can still be chosen, and, for a complete configuration, its explained verdict."""
    document = {"partner": auth.partner_of(account, current.catalog), "configuration": configuration}
    result = {"options": None, "verdict": None, "facts": None, "problems": []}
    try:
        request_ = request_from_data(document, current.catalog, partial=True)
        result["options"] = list_options(current, request_)
        if is_complete(configuration):
            full = request_from_data(document, current.catalog)
            verdict = evaluate(current, full)
            result["verdict"], result["facts"] = verdict.to_json(explain_rules=True), verdict.facts
    except CompanionError as error:
        result["problems"] = error.problems
    return result
