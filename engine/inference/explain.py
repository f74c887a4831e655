"""Explain: turn fired rules into messages a partner can act on, with where each rule is written and why."""

from __future__ import annotations

from engine.catalogue.model import Catalog, Product

SHOWN_FIELDS = {"t"}  # engine bookkeeping, not something a partner chose


def saw(rule, fact: dict) -> dict:
    """Return the values of the fields a rule tested, as the engine saw them."""
    return {name: fact[name] for name in rule.fields if name not in SHOWN_FIELDS and name in fact}


def trace_item(rule, fact: dict) -> dict:
    """Describe one fired rule for --explain."""
    return {"rule": rule.rule, "kind": rule.kind, "code": rule.code, "where": str(rule.where),
            "condition": rule.condition, "saw": saw(rule, fact)}


def _tier_name(product: Product, tier_id: str | None) -> str:
    tier = product.tier(tier_id) if tier_id else None
    return tier.id if tier else str(tier_id)


def violation(catalog: Catalog, product: Product, rule, fact: dict, request) -> dict:
    """Describe a refusal: what is wrong, the values seen against what the rule requires, and what to do."""
    configuration = request.configuration
    item = rule.item
    code = rule.code
    required: dict = {}
    if code == "not-entitled":
        held = ", ".join(request.partner.badges) or "none"
        message = (f"your badges ({held}) do not unlock {product.name}; contact your vendor representative to "
                   "check your account settings")
        hint = "badges that unlock it: " + ", ".join(item["badges"])
        required = {"badge": item["badges"]}
    elif code == "version-too-low":
        version = configuration.version or product.latest_version
        message = f"{rule.rule.split('.', 1)[1]} unlocks {product.id} from version {item['min_version']} only; " \
                  f"the configuration has {version}"
        hint = f"choose version {item['min_version']} or later"
        required = {"version": f">= {item['min_version']}"}
    elif code == "license-not-offered":
        message = f"{product.id} is not sold as a {configuration.license} licence"
        hint = "sold as: " + ", ".join(item["offered"])
        required = {"license": item["offered"]}
    elif code == "term-not-offered":
        terms = " or ".join(str(term) for term in item["terms"])
        if configuration.term_months:
            message = f"{product.id} subscriptions run {terms} months, not {configuration.term_months}"
        else:
            message = f"a {product.id} subscription needs a term"
        hint = f"set term_months to {terms}"
        required = {"term_months": item["terms"]}
    elif code == "over-limit" and "tier" in item:
        message = (f"tier {item['tier']} allows at most {item['max']} devices; "
                   f"the configuration has {configuration.devices}")
        bigger = [tier for tier in product.tiers if tier.devices_max >= configuration.devices
                  and tier.rank > product.tier(item["tier"]).rank]
        hint = (f"choose tier {bigger[0].id} (up to {bigger[0].devices_max} devices) or "
                f"at most {item['max']} devices") if bigger else f"use at most {item['max']} devices"
        required = {"devices": f"<= {item['max']}"}
    elif code == "over-limit":
        quantity = fact.get("q_" + item["addon"].replace("-", "_"))
        message = f"at most {item['max']} of add-on {item['addon']} ({item['name']}); the configuration has {quantity}"
        hint = f"set its quantity to {item['max']} or less"
        required = {"quantity": f"<= {item['max']}"}
    elif code == "requires-tier":
        message = (f"add-on {item['addon']} ({item['name']}) needs tier {item['tier']} or higher; "
                   f"the configuration has {_tier_name(product, configuration.tier)}")
        paths = product.upgrade_targets(configuration.tier or "")
        hint = f"choose tier {item['tier']} or higher, or remove {item['addon']}"
        if paths:
            hint += f" (upgrades from {configuration.tier}: {', '.join(paths)})"
        required = {"tier": f">= {item['tier']}"}
    elif code == "requires-addon":
        message = f"add-on {item['addon']} ({item['name']}) requires add-on {item['other']}"
        hint = f"add {item['other']}, or remove {item['addon']}"
        required = {"addons": f"includes {item['other']}"}
    elif code == "excluded":
        message = f"add-on {item['addon']} cannot be combined with {item['other']}"
        hint = f"remove {item['addon']} or {item['other']}"
        required = {"addons": f"not both {item['addon']} and {item['other']}"}
    else:
        message, hint = f"refused by {rule.rule}", ""
    return {"rule": rule.rule, "code": code, "message": message, "where": str(rule.where), "hint": hint,
            "saw": saw(rule, fact), "required": required, "condition": rule.condition}


def notice(product: Product, rule, fact: dict, request) -> dict:
    """Describe a notice: something understood, but worth telling."""
    if rule.code == "former-name":
        message = (f"tier '{rule.item['former']}' is now called '{rule.item['tier']}' "
                   f"({product.tier(rule.item['tier']).name}); the request was read with the new name")
    elif rule.code == "term-ignored":
        message = "a perpetual licence has no term; term_months is ignored"
    else:
        message = f"notice from {rule.rule}"
    return {"rule": rule.rule, "code": rule.code, "message": message, "where": str(rule.where)}


def version_assumed(product: Product) -> dict:
    """Tell the partner which version was assumed when the request names none."""
    return {"rule": product.rule, "code": "version-assumed", "where": str(product.where),
            "message": f"no version given; assumed the latest, {product.id} {product.latest_version}"}
