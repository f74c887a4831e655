"""Explain: turn fired rules into messages a partner can act on, with where each rule is written and why."""

from __future__ import annotations

from engine.catalogue.conditions import evaluate, leaves, text
from engine.catalogue.model import Catalog, Product

HELD = {True: True, False: False, None: "unknown"}


def saw(rule, shown: dict) -> dict:
    """Return the value of each fact a rule tested, as the request gave it (None: not given)."""
    return {name: shown.get(name) for name in rule.facts}


def conditions(rule, facts: dict, shown: dict) -> list[dict]:
    """List each condition of a rule with the value seen and whether it held (true, false or unknown)."""
    found = []
    for part, required in ((rule.when, False), (rule.unless, True)):
        if part is None:
            continue
        for leaf in leaves(part):
            found.append({"condition": leaf.text, "reads": leaf.plain, "fact": leaf.fact, "saw": shown.get(leaf.fact),
                          "held": HELD[evaluate(leaf, facts)], "required": required, "where": str(leaf.where)})
    return found


def trace_item(rule, facts: dict, shown: dict) -> dict:
    """Describe one fired rule for --explain."""
    return {"rule": rule.rule, "kind": rule.kind, "code": rule.code, "where": str(rule.where),
            "condition": rule.condition, "saw": saw(rule, shown), "conditions": conditions(rule, facts, shown)}


def _tier_name(product: Product, tier_id: str | None) -> str:
    tier = product.tier(tier_id) if tier_id else None
    return tier.id if tier else str(tier_id)


def violation(catalog: Catalog, product: Product, rule, facts: dict, shown: dict, request) -> dict:
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
        who = f"{rule.rule.split('.', 1)[1]} unlocks {product.id}" if rule.rule.startswith("badge.") \
            else f"{product.name} is configurable"
        message = f"{who} from version {item['min_version']} only; the configuration has {version}"
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
        quantity = facts.get(f"addon.{item['addon']}.quantity")
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
    elif code == "requires-version":
        version = configuration.version or product.latest_version
        what = f"add-on {item['addon']} ({item['name']})" if "addon" in item else f"tier {item['tier']}"
        message = f"{what} needs {product.id} version {item['min_version']} or later; the configuration has {version}"
        hint = f"choose version {item['min_version']} or later, or another " + ("add-on" if "addon" in item else "tier")
        required = {"version": f">= {item['min_version']}"}
    elif code == "not-available":
        message, hint = _not_available(product, rule, shown)
        required = {key: item[key] for key in ("countries", "from", "until") if item.get(key)}
    elif "message" in item:  # a constraint of constraints.yaml: its own words
        message, hint = item["message"], item["hint"]
    else:
        message, hint = f"refused by {rule.rule}", ""
    return {"rule": rule.rule, "code": code, "message": message, "where": str(rule.where), "hint": hint,
            "saw": saw(rule, shown), "required": required, "condition": rule.condition,
            "conditions": conditions(rule, facts, shown)}


def _not_available(product: Product, rule, shown: dict) -> tuple[str, str]:
    """Say where and when an offer is sold, and what the request gave."""
    item = rule.item
    model, _, months = item["offer"].partition("-")
    offer = f"{model} ({months} months)" if months else model
    if "countries" not in item:  # a `when:` on the licence model in tiers.yaml
        return (f"{product.name} {offer} licences are not sold for this configuration: {text(rule.unless)} "
                f"does not hold ({rule.rule})", "choose another licence model, or contact your vendor representative")
    window = []
    if item["countries"]:
        window.append("in " + ", ".join(item["countries"]))
    if item["from"]:
        window.append(f"from {item['from']}")
    if item["until"]:
        window.append(f"until {item['until']}")
    country = shown.get("partner.country") or "not given"
    message = (f"{product.name} {offer} licences are sold only {' '.join(window)} ({rule.rule}); "
               f"the partner's country is {country} and the date {shown.get('date')}")
    hint = ("give the partner's country" if not shown.get("partner.country") and item["countries"]
            else "choose another licence model, or contact your vendor representative")
    return message, hint


def notice(product: Product, rule, facts: dict, shown: dict, request) -> dict:
    """Describe a notice: something understood, but worth telling."""
    if rule.code == "former-name":
        message = (f"tier '{rule.item['former']}' is now called '{rule.item['tier']}' "
                   f"({product.tier(rule.item['tier']).name}); the request was read with the new name")
    elif rule.code == "term-ignored":
        message = "a perpetual licence has no term; term_months is ignored"
    elif "message" in rule.item:
        message = rule.item["message"]
    else:
        message = f"notice from {rule.rule}"
    return {"rule": rule.rule, "code": rule.code, "message": message, "where": str(rule.where)}


def version_assumed(product: Product) -> dict:
    """Tell the partner which version was assumed when the request names none."""
    return {"rule": product.rule, "code": "version-assumed", "where": str(product.where),
            "message": f"no version given; assumed the latest, {product.id} {product.latest_version}"}
