"""What the API and the pages both ask of the engine, each a call or two of its public API."""

from __future__ import annotations

import dataclasses
import datetime as dt

from engine import activation as activations
from engine import locker, subscription
from engine.compile import CompiledCatalog
from engine.model import Catalog
from engine.problem import CompanionError, Problem
from web import store
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


def find_activation(email: str, activation_id: str, path: str = "activation_id") -> locker.Activation:
    """Return one of the user's activations; a refusal points at PATH."""
    try:
        return locker.get_activation(store(), email, activation_id)
    except CompanionError as error:
        raise CompanionError([dataclasses.replace(problem, path=problem.path or path)
                              for problem in error.problems]) from None


def subscription_of(activation: locker.Activation) -> dict:
    """Return the running subscription of an activation as an amendment request writes it."""
    data = {key: value for key, value in dict(activation.configuration).items()
            if key in ("product", "version", "license", "term_months", "tier", "devices", "addons")}
    data["start"] = activation.term_start.isoformat()
    return data


def subscription_outcome(compiled: CompiledCatalog, document: dict, kind: str, explain: bool = False) -> dict:
    """Work out an amendment (kind `change`) or a renewal (`renewal`) of a subscription."""
    request = subscription.amendment_from_data(document, compiled.catalog, kind)
    result = subscription.amend(compiled, request) if kind == "change" else subscription.renew(compiled, request)
    return result.to_json(explain)


def activate(compiled: CompiledCatalog, email: str, configuration: dict, on: dt.date | None = None) -> dict:
    """Activate a configuration from the user's locker; return the outcome (Activation ID or shortfall)."""
    return activations.activate_configuration(store(), compiled, email, configuration, on=on).to_json()


def activate_subscription_change(compiled: CompiledCatalog, email: str, activation: locker.Activation, document: dict,
                                 kind: str) -> dict:
    """Activate an amendment (kind `change`) or a renewal (`renewal`) of one of the user's activations."""
    outcome = activations.activate_change(store(), compiled, email, activation.id, document[kind], kind=KINDS[kind])
    return outcome.to_json()
