"""Evaluate a request: assert it as facts in fresh engine sessions and collect what the rules decided."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from engine.catalogue.conditions import RANK
from engine.clock import server_clock
from engine.inference import explain
from engine.inference.compile import FIELD_FACTS, CompiledCatalog, Trace, CompiledRule, FactFields, scalar_plan
from engine.catalogue.model import SUBSCRIPTION, Catalog, Product, name_key, version_number
from engine.inference.request import Request


EVERY_SCALAR = scalar_plan(FIELD_FACTS)  # the plan of FactFields made without one (every scalar fact)


@dataclass
class Verdict:
    """What the rules decided about one request, and why."""

    valid: bool
    violations: list[dict]
    notices: list[dict]
    bom: list[dict]
    rules_version: str
    fired: list[CompiledRule] = field(default_factory=list, repr=False)  # in firing order
    facts: dict = field(default_factory=dict, repr=False)  # the facts the rules saw, by name
    _shown: dict | None = field(default=None, repr=False)  # the same as a person reads them, once worked out
    _about: tuple | None = field(default=None, repr=False)  # (product, request), to work them out when asked

    @property
    def shown(self) -> dict:
        """Return the facts as a person reads them (versions and dates as written)."""
        if self._shown is None:
            self._shown = shown_facts(*self._about, self.facts) if self._about else {}
        return self._shown

    @property
    def trace(self) -> list[dict]:
        """Return the rules that fired, in order, each with where it is written and what it matched."""
        items = [explain.trace_item(rule, self.facts, self.shown) for rule in self.fired]
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


def request_facts(product: Product, request: Request, change: dict | None = None,
                  addons: tuple[str, ...] = ()) -> dict[str, Any]:
    """Name every fact of a request as conditions see it (engine values: versions and dates as numbers).

    ADDONS are the product's add-ons: the quantity of each one not chosen is 0, as the engine fact says.
    """
    configuration = request.configuration
    partner = request.partner
    tier = product.tier(configuration.tier) if configuration.tier else None
    chosen = {addon.id: addon.quantity for addon in configuration.addons}
    facts: dict[str, Any] = {
        "partner.badges": frozenset(partner.badges),
        "partner.country": partner.country,
        "partner.company": partner.company,
        "partner.purchasing_account": partner.purchasing_account or None,
        "date": (request.date or server_clock().today()).toordinal(),  # always known: `date: absent` never holds
        "configuration.product": product.id,
        "configuration.version": version_number(configuration.version or product.latest_version),
        "configuration.license": configuration.license or "",
        "configuration.term_months": configuration.term_months or 0,
        "configuration.tier": configuration.tier or "",
        "configuration.tier" + RANK: tier.rank if tier else -1,
        "configuration.tier_written": name_key(configuration.tier_written or ""),  # as former names compare
        "configuration.devices": configuration.devices,
        "addons": frozenset(chosen),
        "addons.count": len(chosen),
    }
    for addon_id in (*addons, *chosen):
        facts[f"addon.{addon_id}.quantity"] = chosen.get(addon_id, 0)
    if change:
        facts.update(change)
    return facts


def change_facts(product: Product, kind: str, from_tier: str, to_tier: str, month: int | None = None,
                 months_left: int | None = None) -> dict[str, Any]:
    """Name the facts of a change (amendment or renewal) from one tier to another, as request_facts' CHANGE."""
    return {"change.kind": kind, "change.from_tier": from_tier, "change.from_tier" + RANK: product.tier(from_tier).rank,
            "change.to_tier": to_tier, "change.to_tier" + RANK: product.tier(to_tier).rank, "change.month": month,
            "change.months_left": months_left}


def shown_facts(product: Product, request: Request, facts: dict) -> dict[str, Any]:
    """Return the facts as a person reads them (versions and dates as written)."""
    configuration = request.configuration
    shown = {name: value for name, value in facts.items() if RANK not in name and value is not None}
    shown["partner.badges"] = sorted(facts["partner.badges"])
    shown["addons"] = [addon.id for addon in configuration.addons]
    shown["configuration.version"] = configuration.version or product.latest_version
    if facts.get("date") is not None:
        shown["date"] = str(dt.date.fromordinal(facts["date"]))
    if configuration.tier_written:
        shown["configuration.tier_written"] = configuration.tier_written
    return shown


def engine_fact(fields: FactFields, facts: dict, kind: str = "config",
                plan: tuple[tuple[str, str], ...] | None = None) -> dict[str, Any]:
    """Flatten named facts into the one fact the product's rules match; absent things become explicit fields.

    PLAN, (fact name, field) pairs, names the scalar fields to fill: by default those the product's rules read.
    """
    fact: dict[str, Any] = {"t": kind}
    plan = plan if plan is not None else fields.scalars if fields.scalars is not None else EVERY_SCALAR
    for name, field_ in plan:
        value = facts.get(name)
        if value is not None:
            fact[field_] = value
    held = facts["partner.badges"]
    for name, badge_id in fields.badges:
        fact[name] = badge_id in held
    chosen = facts["addons"]
    for on, quantity, addon_id in fields.addons:
        fact[on] = addon_id in chosen
        fact[quantity] = facts.get(f"addon.{addon_id}.quantity", 0)
    return fact


def evaluate(compiled: CompiledCatalog, request: Request) -> Verdict:
    """Evaluate one complete request and return its verdict."""
    catalog = compiled.catalog
    product = catalog.products[request.configuration.product]
    fields = compiled.fields[product.id]
    facts = request_facts(product, request, addons=tuple(catalog.addons.get(product.id, {})))
    fired = run_rules(compiled, product.id, engine_fact(fields, facts))
    return build_verdict(catalog, product, request, facts, fired)


def run_rules(compiled: CompiledCatalog, product_id: str, fact: dict) -> list[CompiledRule]:
    """Run the fact through every shard of the product and return the compiled rules that fired, in order."""
    fired: list[CompiledRule] = []
    seen: set[str] = set()
    # Each fact carries only what its stage's rules read: every field less is JSON the engine does not
    # encode and decode again for each rule that fires.
    fields = compiled.fields[product_id]
    stage_one = {name: fact[name] for name in fields.stage_one if name in fact}
    stage_two = {name: fact[name] for name in fields.stage_two if name in fact}
    for name in compiled.shards[product_id]:
        trace = Trace(stage_two)
        compiled.engine.run(name, [stage_one], trace)
        for key in trace.fired:
            if key not in seen:  # stage-1 rules are repeated in every shard
                seen.add(key)
                fired.append(compiled.rules[key])
    return fired


def run_change(compiled: CompiledCatalog, product_id: str, facts: dict) -> list[CompiledRule]:
    """Run the named FACTS of a change through the product's change rules and return those that fired."""
    name, fields = compiled.change_ruleset(product_id)
    fact = engine_fact(compiled.fields[product_id], facts, "change", scalar_plan(fields))
    change = {field_: fact[field_] for field_ in fields if field_ in fact}
    change["t"] = "change"
    trace = Trace({})
    compiled.engine.run(name, [change], trace)
    return [compiled.rules[key] for key in trace.fired]


def build_verdict(catalog: Catalog, product: Product, request: Request, facts: dict,
                  fired: list[CompiledRule]) -> Verdict:
    """Turn the fired rules into violations, notices and, when the offer rule fired, a bill of materials."""
    configuration = request.configuration
    violations: list[dict] = []
    notices: list[dict] = []
    # How a person reads the facts: only refusals and --explain show them, so work it out only for those.
    shown = shown_facts(product, request, facts) if any(rule.kind == "violation" for rule in fired) else None
    offer = None
    if configuration.version is None:
        notices.append(explain.version_assumed(product))
    for rule in fired:
        if rule.kind == "violation":
            violations.append(explain.violation(catalog, product, rule, facts, shown, request))
        elif rule.kind == "notice":
            notices.append(explain.notice(product, rule, facts, shown, request))
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
        facts=facts,
        _shown=shown,
        _about=(product, request),
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
