"""Compile the catalogue model into durable_rules rulesets (generated dicts, never Python source).

One compile path: every rule-file entry that decides something becomes a CompiledRule holding condition
trees (catalogue.conditions) over named facts: `when`, which must be known to hold, and for a requirement
`unless`, which refuses when it is not known to hold. The short forms of the rule files (a badge's unlock and
minimum version, a tier's device limit, an add-on's prerequisites, exclusions and quantity, the offers)
desugar into such trees in product_rules(); the availability windows, constraints and notices of
constraints.yaml in further_rules(); the upgrade paths in path_rules(). patterns.pattern() turns each tree
into one engine pattern on one fact, negation pushed down to the leaves. Each comparison keeps the
file:line:col it was written at, and each rule the id and location of its entry.

One ruleset per product (split into shards under the engine's limits), named `<product>@<rules version>`
so that a new catalogue never redefines a registered ruleset. A request is routed only to the shards of its
product, so its cost does not grow with the number of products.

The request becomes one flat `config` fact (evaluate.engine_fact). Rules come in stages: stage 1 matches the
config fact (entitlement by badge, not-entitled, former names); an entitlement derives an `entitled` copy,
and stage 2 rules match it: the refusals of offers, tiers, devices and add-ons, availability, constraints and
notices, and one rule per offer sold (`license.<product>`), which fires when the entitled configuration's
licence model and term are sold and yields its bill of materials (evaluate.bom_lines: one engine firing
per request instead of one per line, since each firing costs the engine's Python dispatch about 25 us).
Stage 3 rules match a `change` fact: the upgrade paths an amendment moves along, registered per product on
the first amendment. Every rule matches one fact: joins of several facts crash the engine (see
engine/inference/session.py). Set facts are explicit booleans (`has_<badge>`, `on_<addon>`), because the
engine's negations crash it; a fact the request leaves out is a missing field, and `$neq` on it is false.
"""

from __future__ import annotations

import functools
import gc
import itertools
import threading
from dataclasses import dataclass, field
from typing import Callable

from engine.catalogue.conditions import (FACTS, INTERNAL, RANK, All, Any_, Node, Not, Scope, Test, conjunction,
                                         disjunction, leaves, resolve_tree, text)
from engine.catalogue.load import load_catalog
from engine.catalogue.model import PERPETUAL, SUBSCRIPTION, Catalog, Product, name_key, scope_of, version_number
from engine.catalogue.policies import constraints
from engine.inference.patterns import NOT_TRUE, TRUE, both, member_field, pattern, pattern_fields
from engine.inference.session import RuleSession, check_limits, rule_limits
from engine.problem import CompanionError, Location, Problem

SHARD_RULES = 200  # stage-2 rules per shard: well under the engine's 256-rules-per-shared-pattern limit


NOWHERE = Location("<compiled>")
ALWAYS = All((), NOWHERE)  # the empty conjunction: holds
NEVER = Any_((), NOWHERE)  # the empty disjunction: never holds


def test(fact: str, op: str, value, where: Location, written=None) -> Test:
    """Return a resolved comparison the compiler writes itself (a short form's meaning)."""
    return Test(fact, op, value if written is None else written, where, value)


@dataclass(frozen=True)
class CompiledRule:
    """One engine rule, tagged with the catalogue rule it came from.

    It fires when WHEN is known to hold and, for a requirement, when UNLESS is not known to hold.
    """

    key: str  # unique within the compiled catalogue, e.g. addon.epo.insulation-monitoring#requires-tier
    rule: str  # the catalogue rule id
    where: Location
    kind: str  # entitle | violation | notice | bom | path
    code: str
    stage: int  # 1: the config fact; 2: the entitled fact; 3: a change fact (amendments and renewals)
    when: Node = ALWAYS
    unless: Node | None = None
    item: dict = field(default_factory=dict, compare=False)  # what the verdict item needs (reference, limits...)

    @functools.cached_property
    def spec(self) -> dict | bool:
        """Return the engine pattern of the rule (without its fact-type test), or a constant."""
        parts = [pattern(self.when, TRUE)]
        if self.unless is not None:
            parts.append(pattern(self.unless, NOT_TRUE))
        return both(parts)

    @functools.cached_property
    def condition(self) -> str:
        """Return the rule's condition as text."""
        shown = "" if isinstance(self.when, All) and not self.when.parts else text(self.when)
        if self.unless is not None:
            required = f"unless {text(self.unless)}"
            shown = f"{shown}, {required}" if shown else required[0].upper() + required[1:]  # values keep their case
        return shown or "always"

    @functools.cached_property
    def fields(self) -> frozenset[str]:
        """Return the config fact fields the rule reads."""
        return frozenset(pattern_fields(self.spec))

    @functools.cached_property
    def facts(self) -> tuple[str, ...]:
        """Return the facts the rule tests, in order."""
        found = [leaf.fact for leaf in leaves(self.when)]
        if self.unless is not None:
            found += [leaf.fact for leaf in leaves(self.unless)]
        return tuple(dict.fromkeys(found))


@dataclass
class Trace:
    """One run of a shard: the config fact it evaluates, and the compiled rules that fired, in order."""

    fact: dict  # the stage-two config fact, asserted once the partner is entitled
    fired: list[str] = field(default_factory=list)
    entitled: bool = False


# Each compilation registers fresh names: the engine cannot redefine a ruleset, and two directories with the
# same content (the same rules version) still locate their rules in different files.
_COMPILATIONS = itertools.count(1)
_DEFAULT_ENGINE: RuleSession | None = None


def default_engine() -> RuleSession:
    """Return the process-wide engine."""
    global _DEFAULT_ENGINE
    if _DEFAULT_ENGINE is None:
        _DEFAULT_ENGINE = RuleSession()
    return _DEFAULT_ENGINE


@dataclass
class CompiledCatalog:
    """A catalogue compiled into registered rulesets, ready to evaluate requests."""

    catalog: Catalog
    engine: RuleSession
    shards: dict[str, tuple[str, ...]]  # product id -> ruleset names
    rules: dict[str, CompiledRule]  # key -> compiled rule
    fields: dict[str, "FactFields"] = field(default_factory=dict)  # product id -> how to flatten a request
    serial: int = 0
    change_rules: dict[str, tuple[str, ...]] = field(default_factory=dict)  # product id -> its change rule keys
    changes: dict[str, tuple] = field(default_factory=dict)  # product id -> its change ruleset, once registered
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def rules_version(self) -> str:
        """Return the content hash of the catalogue."""
        return self.catalog.rules_version

    def change_ruleset(self, product_id: str) -> tuple[str, tuple[str, ...]]:
        """Return the product's ruleset of change rules and the fields they read, registered on first use.

        Only amendments read it: registering it with the rest would double the compile time of a large
        catalogue for what validation never asks.
        """
        with self._lock:
            if product_id not in self.changes:
                name = f"{product_id}@{self.rules_version}.{self.serial}#changes"
                rules = [self.rules[key] for key in self.change_rules.get(product_id, ())]
                definition = {rule.key: form for rule in rules if (form := engine_rule(rule)) is not None}
                self.engine.register(name, definition)
                fields = {"t"}.union(*(rule.fields for rule in rules))
                self.changes[product_id] = (name, tuple(sorted(fields)))
            return self.changes[product_id]

    def close(self) -> None:
        """Unregister every ruleset of this catalogue (a reload frees the old one)."""
        for names in self.shards.values():
            for name in names:
                self.engine.unregister(name)
        with self._lock:
            for name, _ in self.changes.values():
                self.engine.unregister(name)
            self.changes = {}
        self.shards = {}


FACT_TYPES = {1: "config", 2: "entitled", 3: "change"}  # the `t` field each stage's rules match


@dataclass(frozen=True)
class FactFields:
    """The fields a product's facts carry: one per badge its rules name, per add-on, and what stages read."""

    badges: tuple[tuple[str, str], ...]  # (field, badge id)
    addons: tuple[tuple[str, str, str], ...]  # (on-field, quantity-field, add-on id)
    stage_one: tuple[str, ...] = ()  # the fields stage-1 rules read: all the asserted fact carries
    stage_two: tuple[str, ...] = ()  # the fields stage-2 rules read: all the entitled fact carries
    scalars: tuple[tuple[str, str], ...] | None = None  # (fact name, field) the rules read; None: every one

    @functools.cached_property
    def used(self) -> frozenset[str]:
        """Return every field a stage-1 or stage-2 rule reads."""
        return frozenset(self.stage_one) | frozenset(self.stage_two)


def fact_fields(catalog: Catalog, product: Product, rules: list[CompiledRule] = ()) -> FactFields:
    """Work out once which fields a product's facts need, from the rules that read them."""
    badges = {badge.id for badge, _ in catalog.badges_unlocking(product.id)}
    for rule in rules:
        for leaf in _leaves(rule):
            if leaf.fact == "partner.badges" and leaf.op != "present":
                badges.update([leaf.engine] if isinstance(leaf.engine, str) else leaf.engine)
    by_stage: dict[int, set[str]] = {1: {"t"}, 2: {"t"}}
    for rule in rules:
        if rule.stage in by_stage:  # change rules: CompiledCatalog.change_ruleset, on first use
            by_stage[rule.stage] |= rule.fields
    used = by_stage[1] | by_stage[2]
    return FactFields(
        tuple((member_field("has", badge_id), badge_id) for badge_id in catalog.badges if badge_id in badges),
        tuple((member_field("on", addon_id), member_field("q", addon_id), addon_id)
              for addon_id in catalog.addons.get(product.id, {})),
        tuple(sorted(by_stage[1])), tuple(sorted(by_stage[2])), scalar_plan(used))


def scalar_plan(fields) -> tuple[tuple[str, str], ...]:
    """Return (fact name, field) for each field of FIELDS that carries one named fact (not a set's member)."""
    return tuple((FIELD_FACTS[name], name) for name in sorted(fields) if name in FIELD_FACTS)


# The config fact's field of each named fact (a tier also by rank), to flatten facts into engine facts.
FIELD_FACTS = {fact.field: name for name, fact in {**FACTS, **INTERNAL}.items() if fact.kind != "set"}
FIELD_FACTS.update({fact.field + "_rank": name + RANK for name, fact in FACTS.items() if fact.kind == "tier"})


def _leaves(rule: CompiledRule):
    yield from leaves(rule.when)
    if rule.unless is not None:
        yield from leaves(rule.unless)


def resolved(node: Node | None, scope: Scope) -> Node | None:
    """Resolve a condition written in a rule file (catalogue.check has reported what is wrong with it)."""
    if node is None:
        return None
    problems: list[Problem] = []
    tree = resolve_tree(node, scope, problems)
    if problems:
        raise CompanionError(problems)
    return tree


def product_rules(catalog: Catalog, product: Product) -> list[CompiledRule]:
    """Generate every compiled rule of one product: each short form desugared into a condition tree."""
    rules: list[CompiledRule] = []
    add = rules.append
    scope = scope_of(catalog, product)
    unlocking = catalog.badges_unlocking(product.id)
    where_of = product.spots.get

    def version_at_least(version: str, where: Location) -> Test:
        return test("configuration.version", "at_least", version_number(version), where, version)

    # Stage 1: entitlement by badge, refusals and notices on the config fact alone.
    holders, entitlements = [], []
    for badge, unlock in unlocking:
        holds = [test("partner.badges", "is", badge.id, unlock.where)]
        if unlock.when is not None:
            holds.append(resolved(unlock.when, scope))
        holder = conjunction(holds, unlock.where)
        entitled = conjunction(holds + ([version_at_least(unlock.min_version, unlock.where_version)]
                                        if unlock.min_version else []), unlock.where)
        holders.append(holder)
        entitlements.append(entitled)
        add(CompiledRule(f"{badge.rule}#{product.id}", badge.rule, unlock.where, "entitle", "entitled", 1, entitled,
                         item={"product": product.id, "min_version": unlock.min_version}))
    add(CompiledRule(f"{product.rule}#not-entitled", product.rule, product.where, "violation", "not-entitled", 1,
                     unless=disjunction(holders, product.where),
                     item={"badges": [badge.id for badge, _ in unlocking]}))
    for index, (badge, unlock) in enumerate(unlocking):
        if not unlock.min_version:
            continue
        others = [entitled for position, entitled in enumerate(entitlements) if position != index]
        add(CompiledRule(f"{badge.rule}#{product.id}-version", badge.rule, unlock.where_version or unlock.where,
                         "violation", "version-too-low", 1,
                         conjunction([holders[index], Not(version_at_least(unlock.min_version, unlock.where_version),
                                                          unlock.where_version)], unlock.where),
                         unless=disjunction(others, unlock.where) if others else None,
                         item={"product": product.id, "min_version": unlock.min_version}))
    for tier in product.tiers:
        for position, former in enumerate(tier.former_names):
            spot = tier.spots.get(f"former_names.{position}", tier.where)
            add(CompiledRule(f"{tier.rule}#former-{name_key(former)}", tier.rule, spot, "notice", "former-name", 1,
                             test("configuration.tier_written", "is", name_key(former), spot, former),
                             item={"former": former, "tier": tier.id}))

    # Stage 2: the entitled configuration.
    if product.min_version:
        spot = where_of("requires.min_version", product.where)
        add(CompiledRule(f"{product.rule}#min-version", product.rule, spot, "violation", "version-too-low", 2,
                         unless=version_at_least(product.min_version, spot),
                         item={"product": product.id, "min_version": product.min_version}))
    license_rule = f"license.{product.id}"
    license_where = where_of("licenses", product.where)
    offered = product.licenses
    add(CompiledRule(f"{license_rule}#not-offered", license_rule, license_where, "violation",
                     "license-not-offered", 2, unless=test("configuration.license", "one_of", offered, license_where),
                     item={"offered": list(offered)}))
    for model, when in product.offer_when.items():
        spot = where_of(f"licenses.{model}.when", license_where)
        add(CompiledRule(f"{license_rule}#{model}-when", license_rule, spot, "violation", "not-available", 2,
                         test("configuration.license", "is", model, spot), unless=resolved(when, scope),
                         item={"product": product.id, "offer": model}))
    is_subscription = test("configuration.license", "is", SUBSCRIPTION, license_where)
    if product.terms:
        spot = where_of("licenses.subscription.terms", license_where)
        add(CompiledRule(f"{license_rule}#term", license_rule, spot, "violation", "term-not-offered", 2,
                         is_subscription, unless=test("configuration.term_months", "one_of", product.terms, spot),
                         item={"terms": list(product.terms)}))
        for term in product.terms:
            add(CompiledRule(f"{license_rule}#subscription-{term}", license_rule, license_where, "bom", "offer", 2,
                             conjunction([is_subscription, test("configuration.term_months", "is", term,
                                                                license_where)], license_where),
                             item={"offer": f"{SUBSCRIPTION}-{term}"}))
    if product.perpetual:
        is_perpetual = test("configuration.license", "is", PERPETUAL, license_where)
        add(CompiledRule(f"{license_rule}#perpetual", license_rule, license_where, "bom", "offer", 2, is_perpetual,
                         item={"offer": PERPETUAL}))
        add(CompiledRule(f"{license_rule}#perpetual-term", license_rule, license_where, "notice", "term-ignored", 2,
                         conjunction([is_perpetual, Not(test("configuration.term_months", "at_most", 0,
                                                             license_where), license_where)], license_where)))
    for tier in product.tiers:
        chosen = [test("configuration.tier", "is", tier.id, tier.where)]
        if tier.when is not None:
            chosen.append(resolved(tier.when, scope))
        scope_tier = conjunction(chosen, tier.where)
        spot = tier.spots.get("devices.max", tier.where)
        add(CompiledRule(f"{tier.rule}#over-limit", tier.rule, spot, "violation", "over-limit", 2, scope_tier,
                         unless=test("configuration.devices", "at_most", tier.devices_max, spot),
                         item={"max": tier.devices_max, "tier": tier.id}))
        if tier.min_version:
            spot = tier.spots.get("requires.min_version", tier.where)
            add(CompiledRule(f"{tier.rule}#min-version", tier.rule, spot, "violation", "requires-version", 2,
                             scope_tier, unless=version_at_least(tier.min_version, spot),
                             item={"tier": tier.id, "name": tier.name, "min_version": tier.min_version}))
    ranks = {tier.id: tier.rank for tier in product.tiers}
    for addon in catalog.addons.get(product.id, {}).values():
        spots = addon.spots
        chosen = [test("addons", "is", addon.id, addon.where)]
        if addon.when is not None:
            chosen.append(resolved(addon.when, scope))
        scope_addon = conjunction(chosen, addon.where)
        about = {"addon": addon.id, "name": addon.name}
        if addon.requires_tier in ranks:
            spot = spots["requires.tier"]
            add(CompiledRule(f"{addon.rule}#requires-tier", addon.rule, spot, "violation", "requires-tier", 2,
                             scope_addon, unless=test("configuration.tier", "at_least", ranks[addon.requires_tier],
                                                      spot, addon.requires_tier),
                             item={**about, "tier": addon.requires_tier}))
        if addon.min_version:
            spot = spots["requires.min_version"]
            add(CompiledRule(f"{addon.rule}#min-version", addon.rule, spot, "violation", "requires-version", 2,
                             scope_addon, unless=version_at_least(addon.min_version, spot),
                             item={**about, "min_version": addon.min_version}))
        for position, other in enumerate(addon.requires_addons):
            spot = spots[f"requires.addons.{position}"]
            add(CompiledRule(f"{addon.rule}#requires-{other}", addon.rule, spot, "violation", "requires-addon", 2,
                             scope_addon, unless=test("addons", "is", other, spot), item={**about, "other": other}))
        for position, other in enumerate(addon.excludes):
            spot = spots[f"excludes.{position}"]
            add(CompiledRule(f"{addon.rule}#excludes-{other}", addon.rule, spot, "violation", "excluded", 2,
                             conjunction([scope_addon, test("addons", "is", other, spot)], spot),
                             item={**about, "other": other}))
        if addon.max_quantity is not None:
            spot = spots.get("quantity.max", addon.where)
            add(CompiledRule(f"{addon.rule}#over-limit", addon.rule, spot, "violation", "over-limit", 2,
                             scope_addon, unless=test(f"addon.{addon.id}.quantity", "at_most", addon.max_quantity,
                                                      spot), item={**about, "max": addon.max_quantity}))
    rules.extend(further_rules(catalog, product, scope))
    rules.extend(path_rules(product, scope))
    return rules


def further_rules(catalog: Catalog, product: Product, scope: Scope) -> list[CompiledRule]:
    """Compile the availability windows, constraints and notices of constraints.yaml for one product."""
    further = catalog.extras.get(constraints.FILE)
    if further is None:
        return []
    rules = []
    for window in further.availability:
        if window.product != product.id:
            continue
        offer = [test("configuration.license", "is", window.license, window.where_offer, window.offer)]
        if window.term is not None:
            offer.append(test("configuration.term_months", "is", window.term, window.where_offer, window.offer))
        if window.when is not None:
            offer.append(resolved(window.when, scope))
        allowed = []
        if window.countries:
            allowed.append(test("partner.country", "one_of", window.countries, window.where_countries))
        if window.start:
            allowed.append(test("date", "at_least", window.start.toordinal(), window.where_start, window.start))
        if window.end:
            allowed.append(test("date", "at_most", window.end.toordinal(), window.where_end, window.end))
        rules.append(CompiledRule(f"{window.rule}#window", window.rule, window.where, "violation", "not-available",
                                  2, conjunction(offer, window.where), unless=conjunction(allowed, window.where),
                                  item={"product": product.id, "offer": window.offer,
                                        "countries": list(window.countries),
                                        "from": str(window.start) if window.start else None,
                                        "until": str(window.end) if window.end else None}))
    for constraint in further.constraints:
        if constraint.product != product.id:
            continue
        rules.append(CompiledRule(f"{constraint.rule}#require", constraint.rule, constraint.where, "violation",
                                  constraint.code, 2, resolved(constraint.when, scope) or ALWAYS,
                                  unless=resolved(constraint.require, scope),
                                  item={"message": constraint.message, "hint": constraint.hint}))
    for notice in further.notices:
        if notice.product != product.id:
            continue
        rules.append(CompiledRule(f"{notice.rule}#notice", notice.rule, notice.where, "notice", notice.code, 2,
                                  resolved(notice.when, scope) or ALWAYS, item={"message": notice.message}))
    return rules


def path_rules(product: Product, scope: Scope) -> list[CompiledRule]:
    """Compile the declared upgrade paths: rules over a change fact that decide each upward tier move.

    One rule per path (it opens the move when its `when` holds), one per tier for the moves up that no path
    declares, and one per move whose every path carries a `when` (refused unless one of them holds). The
    engine is asked about moves up only.
    """
    rules = []
    spot = product.spots.get("upgrades", product.where)
    rule = f"upgrades.{product.id}"
    for old in product.tiers:
        leaving = [upgrade for upgrade in product.upgrades if upgrade.source == old.id]
        targets = tuple(dict.fromkeys(upgrade.target for upgrade in leaving))
        start = test("change.from_tier", "is", old.id, old.where)
        for upgrade in leaving:
            new = product.tier(upgrade.target)
            move = [start, test("change.to_tier", "is", new.id, new.where)]
            when = resolved(upgrade.when, scope) if upgrade.when is not None else None
            rules.append(CompiledRule(f"{upgrade.rule}#path", upgrade.rule, upgrade.where, "path", "upgrade-path", 3,
                                      conjunction(move + ([when] if when else []), upgrade.where),
                                      item={"from": old.id, "to": new.id}))
        for target in targets:
            paths = [upgrade for upgrade in leaving if upgrade.target == target]
            if any(upgrade.when is None for upgrade in paths):
                continue  # a path without a condition is always open
            new = product.tier(target)
            rules.append(CompiledRule(
                f"{rule}#{old.id}-{new.id}", rule, spot, "violation", "not-an-upgrade-path", 3,
                conjunction([start, test("change.to_tier", "is", new.id, new.where)], spot),
                unless=disjunction([resolved(upgrade.when, scope) for upgrade in paths], spot),
                item={"from": old.id, "to": new.id}))
        higher = {tier.id for tier in product.tiers if tier.rank > old.rank}
        if higher - set(targets):  # some move up from this tier is declared by no path
            # Only moves up reach these rules (a move down is the policy's: mid_term.tier-downgrade).
            rules.append(CompiledRule(
                f"{rule}#{old.id}", rule, spot, "violation", "not-an-upgrade-path", 3, start,
                unless=test("change.to_tier", "one_of", targets, spot) if targets else None,
                item={"from": old.id}))
    return rules


def _action(key: str, entitles: bool) -> Callable:
    """Build the engine action of one compiled rule: record that it fired; an entitlement chains on."""
    if entitles:
        def entitle(c) -> None:
            c.scratch.fired.append(key)
            if not c.scratch.entitled:  # a second badge adds nothing: derive the entitlement once
                c.scratch.entitled = True
                c.assert_fact({**c.scratch.fact, "t": "entitled"})
        return entitle

    def record(c) -> None:
        c.scratch.fired.append(key)
    return record


def engine_rule(rule: CompiledRule) -> dict | None:
    """Return the durable_rules dict form of a compiled rule, or None when it can never fire."""
    spec = both([{"t": FACT_TYPES[rule.stage]}, rule.spec])
    if spec is False:
        return None
    return {"all": [{"c": spec if list(spec) == ["$and"] else {"$and": [spec]}}],
            "run": _action(rule.key, rule.kind == "entitle")}


def shard(rules: list[CompiledRule]) -> list[list[CompiledRule]]:
    """Split a product's rules into shards: stage-1 rules go everywhere they are needed (change rules: none)."""
    entitle = [rule for rule in rules if rule.kind == "entitle"]
    first = [rule for rule in rules if rule.stage == 1]
    later = [rule for rule in rules if rule.stage == 2]
    chunks = [later[start:start + SHARD_RULES] for start in range(0, len(later), SHARD_RULES)] or [[]]
    return [(first if index == 0 else entitle) + chunk for index, chunk in enumerate(chunks)]


def compile_catalog(catalog: Catalog, engine: RuleSession | None = None) -> CompiledCatalog:
    """Compile and register every product's rulesets; refuse, located, what the engine could not hold."""
    # Compiling allocates hundreds of thousands of small objects that all live on: the cyclic garbage
    # collector would walk them again and again for nothing.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _compile(catalog, engine)
    finally:
        if paused:
            gc.enable()


def _compile(catalog: Catalog, engine: RuleSession | None) -> CompiledCatalog:
    """Compile and register, with the garbage collector paused."""
    engine = engine or default_engine()
    serial = next(_COMPILATIONS)
    compiled: dict[str, CompiledRule] = {}
    plans: dict[str, list[tuple[str, dict]]] = {}
    problems: list[Problem] = []
    fields: dict[str, FactFields] = {}
    change_rules: dict[str, tuple[str, ...]] = {}
    for product in catalog.products.values():
        rules = product_rules(catalog, product)
        fields[product.id] = fact_fields(catalog, product, rules)
        compiled.update((rule.key, rule) for rule in rules)
        change_rules[product.id] = tuple(rule.key for rule in rules if rule.stage == 3)
        plans[product.id] = []
        reasons: dict[str, None] = {}
        engine_rules = {}
        for rule in rules:
            spec = engine_rule(rule)
            too_complex = rule_limits(spec) if spec is not None else []
            if too_complex:
                # Located at the rule: the product is not too large, this one condition is too intricate.
                problems.append(Problem("engine-limit", "its condition is too intricate for the rule "
                                        f"engine: {too_complex[0]}", rule.where, rule=rule.rule,
                                        hint="write it with fewer nested all / any / not (a `not` of an `all` is an "
                                             "`any`), or split it into several rules"))
            elif spec is not None:
                engine_rules[rule.key] = spec
        for index, group in enumerate(shard(rules)):
            name = f"{product.id}@{catalog.rules_version}.{serial}" + (f"#{index}" if index else "")
            definition = {rule.key: engine_rules[rule.key] for rule in group if rule.key in engine_rules}
            reasons.update(dict.fromkeys(check_limits(definition)))
            plans[product.id].append((name, definition))
        if reasons:
            # Refuse before registering: past these limits the engine fails, or hangs for good.
            problems.append(Problem("engine-limit", f"{product.id} is too large for the rule engine: "
                                    + "; ".join(reasons), product.where, rule=product.rule,
                                    hint="split the product into several, or use fewer tiers or add-ons"))
    if problems:
        raise CompanionError(problems)
    shards: dict[str, tuple[str, ...]] = {}
    for product_id, plan in plans.items():
        for name, definition in plan:
            engine.register(name, definition, limits_checked=True)
        shards[product_id] = tuple(name for name, _ in plan)
    return CompiledCatalog(catalog, engine, shards, compiled, fields, serial, change_rules)


_CACHE: dict[tuple[str, str], CompiledCatalog] = {}
_CACHE_LOCK = threading.Lock()


def load(directory=None) -> CompiledCatalog:
    """Load, check and compile a rules directory; reuse the compilation while its content is unchanged."""
    catalog = load_catalog(directory)
    key = (str(catalog.directory.resolve()), catalog.rules_version)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = compile_catalog(catalog)
        return _CACHE[key]
