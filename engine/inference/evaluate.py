"""Evaluate a request: assert it as facts in fresh engine sessions and collect what the rules decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.inference import explain
from engine.inference.compile import CompiledCatalog, Trace, CompiledRule, FactFields, version_number
from engine.catalogue.model import SUBSCRIPTION, Catalog, Product
from engine.inference.request import Request


@dataclass
class Verdict:
    """What the rules decided about one request, and why."""

    valid: bool
    violations: list[dict]
    notices: list[dict]
    bom: list[dict]
    rules_version: str
    fired: list[CompiledRule] = field(default_factory=list, repr=False)  # in firing order
    fact: dict = field(default_factory=dict, repr=False)  # the config fact the rules saw

    @property
    def trace(self) -> list[dict]:
        """Return the rules that fired, in order, each with where it is written and what it matched."""
        items = [explain.trace_item(rule, self.fact) for rule in self.fired]
        for item in items:
            if item["kind"] == "bom":  # what the offer rule yielded, line by line, with each line's rule
                item["yields"] = [{"reference": line["reference"], "quantity": line["quantity"],
                                   "rule": line["rule"]} for line in self.bom]
        return items

    @property
    def exercised(self) -> list[str]:
        """Return the catalogue rules that decided this verdict: fired, refusing, or yielding a BOM line."""
        found = [rule.rule for rule in self.fired] + [item["rule"] for item in self.violations]
        found += [line["rule"] for line in self.bom]
        return list(dict.fromkeys(found))

    def to_json(self, explain_rules: bool = False) -> dict:
        """Return the verdict as JSON: valid, violations, notices, bom, rules_version (and the trace when asked)."""
        data: dict[str, Any] = {"valid": self.valid, "violations": self.violations, "notices": self.notices,
                                "bom": self.bom, "rules_version": self.rules_version}
        if explain_rules:
            data["explanation"] = self.trace
        return data


def config_fact(fields: FactFields, product: Product, request: Request) -> dict:
    """Flatten a request into the one fact the product's rules match; absent things become explicit fields."""
    configuration = request.configuration
    tier = product.tier(configuration.tier) if configuration.tier else None
    version = configuration.version or product.latest_version
    fact: dict[str, Any] = {
        "t": "config",
        "version_n": version_number(version),
        "license": configuration.license or "",
        "term": configuration.term_months or 0,
        "tier": configuration.tier or "",
        "tier_written": configuration.tier_written or "",
        "tier_rank": tier.rank if tier else -1,
        "devices": configuration.devices,
    }
    held = request.partner.badges
    for name, badge_id in fields.badges:
        fact[name] = badge_id in held
    chosen = {addon.id: addon.quantity for addon in configuration.addons}
    for on, quantity, addon_id in fields.addons:
        fact[on] = addon_id in chosen
        if addon_id in chosen:
            # Only a chosen add-on's quantity is ever tested (after `on_<addon> == true`); every field
            # less is JSON the engine does not encode and decode again for each rule that fires.
            fact[quantity] = chosen[addon_id]
    return fact


def evaluate(compiled: CompiledCatalog, request: Request) -> Verdict:
    """Evaluate one complete request and return its verdict."""
    catalog = compiled.catalog
    product = catalog.products[request.configuration.product]
    fact = config_fact(compiled.fields[product.id], product, request)
    fired = run_rules(compiled, product.id, fact)
    return build_verdict(catalog, product, request, fact, fired)


def run_rules(compiled: CompiledCatalog, product_id: str, fact: dict) -> list[CompiledRule]:
    """Run the fact through every shard of the product and return the compiled rules that fired, in order."""
    fired: list[CompiledRule] = []
    seen: set[str] = set()
    # The asserted fact carries only what stage-1 rules test; the entitlement derives the rest. Every field
    # less is JSON the engine does not encode and decode again for each rule that fires.
    stage_one = {name: fact[name] for name in compiled.fields[product_id].stage_one}
    stage_two = {name: value for name, value in fact.items() if name not in stage_one or name == "t"}
    for name in compiled.shards[product_id]:
        trace = Trace(stage_two)
        compiled.engine.run(name, [stage_one], trace)
        for key in trace.fired:
            if key not in seen:  # stage-1 rules are repeated in every shard
                seen.add(key)
                fired.append(compiled.rules[key])
    return fired


def build_verdict(catalog: Catalog, product: Product, request: Request, fact: dict,
                  fired: list[CompiledRule]) -> Verdict:
    """Turn the fired rules into violations, notices and, when the offer rule fired, a bill of materials."""
    configuration = request.configuration
    violations: list[dict] = []
    notices: list[dict] = []
    offer = None
    if configuration.version is None:
        notices.append(explain.version_assumed(product))
    for rule in fired:
        if rule.kind == "violation":
            violations.append(explain.violation(catalog, product, rule, fact, request))
        elif rule.kind == "notice":
            notices.append(explain.notice(product, rule, fact, request))
        elif rule.kind == "bom":
            offer = rule.item["offer"]
    valid = not violations
    return Verdict(
        valid=valid,
        violations=violations,
        notices=notices,
        bom=bom_lines(catalog, product, configuration, offer) if valid and offer else [],
        rules_version=catalog.rules_version,
        fired=fired,
        fact=fact,
    )


def bom_lines(catalog: Catalog, product: Product, configuration, offer: str) -> list[dict]:
    """Return the bill of materials of an entitled configuration sold as OFFER, each line with its rule."""
    months = configuration.term_months if configuration.license == SUBSCRIPTION else None
    tier = product.tier(configuration.tier)
    lines = [_line(catalog, tier.references[offer], 1, months, tier.rule)]
    devices = catalog.devices.get(product.id)
    if devices and configuration.devices > tier.devices_included:
        lines.append(_line(catalog, devices.references[offer], configuration.devices - tier.devices_included,
                           months, devices.rule))
    chosen = {addon.id: addon.quantity for addon in configuration.addons}
    for addon in catalog.addons.get(product.id, {}).values():  # catalogue order: stable whatever the request
        if addon.id in chosen:
            lines.append(_line(catalog, addon.references[offer], chosen[addon.id], months, addon.rule))
    return lines


def _line(catalog: Catalog, reference: str, quantity: int, months: int | None, rule: str) -> dict:
    return {"reference": reference, "description": catalog.references[reference].description,
            "quantity": quantity, "months": months, "rule": rule}
