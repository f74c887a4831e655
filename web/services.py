"""What the API and the pages both ask of the engine, each a call or two of its public API."""

from __future__ import annotations

import dataclasses
import datetime as dt

from engine import (Catalog, CompiledCatalog, ExportRefused, GUIDANCE_MODES, MAX_DEPTH, Source, TemplateNotAvailable,
                    activate_change, activate_configuration, amend, amendment_from_data, cart_url_from, channels,
                    check_follows, export_csv, export_file_name, place_order, prepare_order, renew, request_from_data,
                    schema_problems, update_guide)
from engine import locker
from engine.problem import CompanionError, Problem
from engine.locker.db import Store
from web import auth, inputs
from web.state import store, today
from web.live import ReloadState

KINDS = {"change": "amendment", "renewal": "renewal"}


def where(location) -> str:
    """Return file:line of a location (the column is noise on a page)."""
    return f"{location.file}:{location.line}" if location.line else location.file


def catalogue_json(catalog: Catalog, state: ReloadState) -> dict:
    """Describe the catalogue with every item's rule id and file:line, and the state of the last reload."""
    products = []
    for product in catalog.products.values():
        products.append({
            "id": product.id, "name": product.name, "rule": product.rule, "where": where(product.where),
            "versions": list(product.versions), "licenses": list(product.licenses), "terms": list(product.terms),
            "tiers": [{"id": tier.id, "name": tier.name, "rank": tier.rank, "rule": tier.rule,
                       "where": where(tier.where), "former_names": list(tier.former_names),
                       "devices_included": tier.devices_included, "devices_max": tier.devices_max,
                       "references": dict(tier.references), "description": tier.description}
                      for tier in product.tiers],
            "upgrades": [{"from": upgrade.source, "to": upgrade.target, "rule": upgrade.rule,
                          "where": where(upgrade.where)} for upgrade in product.upgrades],
            "addons": [{"id": addon.id, "name": addon.name, "rule": addon.rule, "where": where(addon.where),
                        "requires_tier": addon.requires_tier, "requires_addons": list(addon.requires_addons),
                        "excludes": list(addon.excludes), "max_quantity": addon.max_quantity,
                        "references": dict(addon.references), "description": addon.description}
                       for addon in catalog.addons.get(product.id, {}).values()],
            "devices": ({"name": catalog.devices[product.id].name, "rule": catalog.devices[product.id].rule,
                         "where": where(catalog.devices[product.id].where),
                         "references": dict(catalog.devices[product.id].references)}
                        if product.id in catalog.devices else None),
        })
    badges = [{"id": badge.id, "name": badge.name, "rule": badge.rule, "where": where(badge.where),
               "unlocks": [{"product": unlock.product, "min_version": unlock.min_version} for unlock in badge.unlocks]}
              for badge in catalog.badges.values()]
    reload = state.to_json()
    return {"rules_version": catalog.rules_version, "products": products, "badges": badges, "reload": reload}


def find_activation(email: str, activation_id: str, kind: str, path: str = "activation_id",
                    database: Store | None = None) -> locker.Activation:
    """Return one of the user's activations to amend or renew (the latest of its chain); a refusal points at PATH."""
    try:
        return locker.get_activation_to_change(database or store(), email, activation_id, KINDS[kind])
    except CompanionError as error:
        raise CompanionError([dataclasses.replace(problem, path=problem.path or path)
                              for problem in error.problems]) from None


def subscription_of(activation: locker.Activation) -> dict:
    """Return the running subscription of an activation as an amendment request writes it."""
    data = {key: value for key, value in dict(activation.configuration).items()
            if key in ("product", "version", "license", "term_months", "tier", "devices", "addons")}
    data["start"] = activation.term_start.isoformat()
    return data


def subscription_outcome(compiled: CompiledCatalog, document: dict, kind: str, explain: bool = False,
                         activation: locker.Activation | None = None) -> dict:
    """Work out an amendment (kind `change`) or a renewal (`renewal`) of a subscription (of ACTIVATION, if given)."""
    request = amendment_from_data(document, compiled.catalog, kind)
    if activation is not None:
        check_follows(activation, request.change.date, kind)
    result = amend(compiled, request) if kind == "change" else renew(compiled, request)
    return result.to_json(explain)


def activate(database: Store, compiled: CompiledCatalog, email: str, configuration: dict,
             on: dt.date | None = None) -> dict:
    """Activate a configuration from the user's locker today; return the outcome (Activation ID or shortfall)."""
    return activate_configuration(database, compiled, email, configuration, today=today(),
                                              on=on).to_json()


def activate_subscription_change(database: Store, compiled: CompiledCatalog, email: str, activation: locker.Activation,
                                 document: dict, kind: str) -> dict:
    """Activate today an amendment (kind `change`) or a renewal (`renewal`) of one of the user's activations."""
    outcome = activate_change(database, compiled, email, activation.id, document[kind],
                                          kind=KINDS[kind], today=today())
    return outcome.to_json()


def dated_today(change: dict | None, kind: str) -> dict:
    """Return the change block of an amendment or renewal to activate, dated today unless it names a day.

    The quote is then worked out for the day the debit takes; a block naming another day is refused when it
    is activated (engine.activation: date-not-today).
    """
    if not isinstance(change, dict) or change.get("date") is not None:
        return change  # not a change block at all (the request's schema says where), or dated already
    return {**change, "date": today().isoformat()}


# --- bills of materials, checkout, licence-update guidance -------------------------------------------------


def configuration_problems(configuration) -> list[Problem]:
    """Return what is malformed in a (partial) configuration by the request schema, at JSON paths; [] if nothing."""
    problem = inputs.json_problem(configuration, MAX_DEPTH, "the configuration", ("configuration",))
    if problem is not None:
        return [problem]
    document = {"partner": {"badges": []}, "configuration": configuration}
    return schema_problems(Source("<configuration>", document), "request.schema.json")


def stored_configuration(project) -> dict:
    """Return a saved project's configuration, or refuse one stored malformed (before saving checked its shape)."""
    problems = configuration_problems(project.configuration)
    if problems:
        raise CompanionError([Problem("bad-configuration", f"project “{project.name}” holds a malformed "
                                      "configuration", path="configuration",
                                      hint="delete it, or build the configuration again on Configure and save it"),
                              *problems])
    return project.configuration


def partner_request(current: CompiledCatalog, account, configuration: dict):
    """Return the checked request of a configuration for the signed-in account's stored partner data."""
    document = {"partner": auth.partner_of(account, current.catalog), "configuration": configuration}
    return request_from_data(document, current.catalog)


def offer(current: CompiledCatalog | None, account, product: str | None = None) -> dict | None:
    """Return engine.services.channels for this partner and product; None without rules that declare exports."""
    if current is None:
        return None
    try:
        return channels(current.catalog, account.user, product)
    except CompanionError:
        return None


def project_bom(current: CompiledCatalog, account, project, template: str | None) -> tuple[bytes, str]:
    """Return a saved project's bill of materials as CSV in TEMPLATE (default: the recommended one), and a file name.

    Refusals are CompanionErrors: the template is unknown (422) or not offered to this partner (403, code
    template-not-offered), or the project is no longer a valid configuration (422, code configuration-refused).
    """
    return configuration_bom(current, account, stored_configuration(project), template, project.name)


def configuration_bom(current: CompiledCatalog, account, configuration, template: str | None,
                      name: str | None = None) -> tuple[bytes, str]:
    """Return the bill of materials of a configuration as CSV in TEMPLATE, and a download file name."""
    problems = configuration_problems(configuration)
    if problems:
        raise CompanionError(problems)
    if not template:
        template = (offer(current, account, configuration.get("product")) or {}).get("recommended") or ""
    request = partner_request(current, account, configuration)
    try:
        data = export_csv(current, request, template)
    except TemplateNotAvailable as error:
        raise CompanionError([dataclasses.replace(problem, path="template") for problem in error.problems]) from None
    except ExportRefused as error:
        what = f"project “{name}”" if name else "the configuration"
        raise CompanionError([Problem("configuration-refused", f"{what} is not a valid configuration under the "
                                      "current rules, so it has no bill of materials to export",
                                      hint="open it on Configure, fix what the rules refuse, and save it",
                                      path="configuration"), *error.problems]) from None
    return data, export_file_name(template, name)


def order_reference(project) -> str:
    """Return the project reference an order carries: the project id, so renaming cannot change the order key."""
    return str(project.id)


def prepare_checkout(current: CompiledCatalog, account, project):
    """Return the order of a saved project for review (engine.services.prepare_order).

    Raises CheckoutRefused (no or an invalid purchasing account: 403) or CompanionError (invalid configuration).
    """
    request = partner_request(current, account, stored_configuration(project))
    try:
        return prepare_order(current, request, project=order_reference(project),
                                      project_since=project.created_at.isoformat())
    except ExportRefused as error:
        raise CompanionError([Problem("configuration-refused", f"project “{project.name}” is not a valid "
                                      "configuration under the current rules, so it cannot be ordered",
                                      hint="open it on Configure and fix it", path="configuration"),
                              *error.problems]) from None


def place_checkout(order, cart_url: str | None, retry: dict):
    """Hand a reviewed order to the cart (place_order); CheckoutFailed carries the partner's message."""
    return place_order(order, cart_url_from(cart_url or None), **retry)


def update_guides(catalog: Catalog, product: str | None, version: str | None, event: str,
                  activation_id: str | None = None) -> dict:
    """Return the licence-update steps of a product version after EVENT, online and offline (update_guide)."""
    result: dict = {"online": None, "offline": None, "problems": []}
    if not product:
        return result
    for mode in GUIDANCE_MODES:
        try:
            result[mode] = update_guide(catalog, product, version or None, mode, event, activation_id)
        except CompanionError as error:
            result["problems"] = list(error.problems)
            break
    return result
