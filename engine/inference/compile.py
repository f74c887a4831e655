"""Compile the catalogue model into durable_rules rulesets (generated dicts, never Python source).

One ruleset per product (split into shards under the engine's limits), named `<product>@<rules version>`
so that a new catalogue never redefines a registered ruleset. A request is routed only to the shards of its
product, so its cost does not grow with the number of products.

The request becomes one flat `config` fact (see evaluate.config_fact). Rules come in two stages:
stage 1 matches the config fact (entitlement by badge, refusals, notices); an entitlement derives an
`entitled` copy of the config fact, and stage 2 rules match that derived fact: the refusals of offers,
tiers, devices and add-ons, and one rule per offer sold (`license.<product>`), which fires when the
entitled configuration's licence model and term are sold and yields its bill of materials. The bill of
materials is that offer's reference of the chosen tier, the device licences beyond what the tier includes
and the chosen add-ons, each line naming the catalogue rule it comes from (evaluate.bom_lines): one engine
firing per request instead of one per line, since each firing costs the engine's Python dispatch about
25 us. Every rule matches one fact: joins of several facts crash the engine (see engine/inference/session.py).
Absent things are explicit fields (`has_<badge>: false`, `on_<addon>: false`), because the engine's
negations crash it and `$neq` on a missing field is false.
"""

from __future__ import annotations

import functools
import gc
import itertools
import threading
from dataclasses import dataclass, field
from typing import Callable

from engine.catalogue.load import load_catalog
from engine.catalogue.model import PERPETUAL, SUBSCRIPTION, VERSION_BASE, VERSION_PARTS, Catalog, Product, version_key
from engine.problem import CompanionError, Location, Problem
from engine.inference.session import RuleSession, check_limits

SHARD_RULES = 200  # stage-2 rules per shard: well under the engine's 256-rules-per-shared-pattern limit


@dataclass(frozen=True)
class Cond:
    """One test on a config fact field, as an engine pattern and as text for people."""

    spec: dict
    text: str
    fields: tuple[str, ...]


def eq(name: str, value) -> Cond:
    """field == value."""
    shown = str(value).lower() if isinstance(value, bool) else value
    return Cond({name: value}, f"{name} == {shown}", (name,))


def neq(name: str, value) -> Cond:
    """field != value."""
    return Cond({"$neq": {name: value}}, f"{name} != {value}", (name,))


def gt(name: str, value: int) -> Cond:
    """field > value."""
    return Cond({"$gt": {name: value}}, f"{name} > {value}", (name,))


def gte(name: str, value: int) -> Cond:
    """field >= value."""
    return Cond({"$gte": {name: value}}, f"{name} >= {value}", (name,))


def lt(name: str, value: int) -> Cond:
    """field < value."""
    return Cond({"$lt": {name: value}}, f"{name} < {value}", (name,))


def either(*conds: Cond) -> Cond:
    """Any of the conditions."""
    return Cond({"$or": [cond.spec for cond in conds]}, "(" + " or ".join(cond.text for cond in conds) + ")",
                tuple(name for cond in conds for name in cond.fields))


@dataclass(frozen=True)
class CompiledRule:
    """One engine rule, tagged with the catalogue rule it came from."""

    key: str  # unique within the compiled catalogue, e.g. addon.epo.insulation-monitoring#requires-tier
    rule: str  # the catalogue rule id
    where: Location
    kind: str  # entitle | violation | notice | offer | bom
    code: str
    stage: int
    conds: tuple[Cond, ...]
    item: dict = field(default_factory=dict, compare=False)  # what the verdict item needs (reference, limits...)

    @functools.cached_property
    def condition(self) -> str:
        """Return the rule's condition as text."""
        return " and ".join(cond.text for cond in self.conds if cond is not IS_CONFIG) or "always"

    @functools.cached_property
    def fields(self) -> tuple[str, ...]:
        """Return the config fields the rule tests."""
        seen: dict[str, None] = {}
        for cond in self.conds:
            for name in cond.fields:
                seen.setdefault(name, None)
        return tuple(seen)


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

    @property
    def rules_version(self) -> str:
        """Return the content hash of the catalogue."""
        return self.catalog.rules_version

    def close(self) -> None:
        """Unregister every ruleset of this catalogue (a reload frees the old one)."""
        for names in self.shards.values():
            for name in names:
                self.engine.unregister(name)
        self.shards = {}


def field_name(prefix: str, item_id: str) -> str:
    """Name a config field after an id: `has_power_management` (ids never contain '_')."""
    return f"{prefix}_{item_id.replace('-', '_')}"


def version_number(version: str) -> int:
    """Encode a version as one integer that orders like the version (check.py refuses what does not fit)."""
    parts = list(version_key(version))
    if len(parts) > VERSION_PARTS or any(part >= VERSION_BASE for part in parts):
        raise ValueError(f"version {version!r} has more than {VERSION_PARTS} parts or a part over {VERSION_BASE - 1}")
    parts += [0] * (VERSION_PARTS - len(parts))
    number = 0
    for part in parts:
        number = number * VERSION_BASE + part
    return number


IS_CONFIG = eq("t", "config")
IS_ENTITLED = eq("t", "entitled")


@dataclass(frozen=True)
class FactFields:
    """The explicit fields a product's config fact carries: one per unlocking badge and per add-on."""

    badges: tuple[tuple[str, str], ...]  # (field, badge id)
    addons: tuple[tuple[str, str, str], ...]  # (on-field, quantity-field, add-on id)

    @property
    def stage_one(self) -> tuple[str, ...]:
        """Return the fields stage-1 rules test (entitlement, refusals and notices of the config fact)."""
        return ("t", "version_n", "tier_written") + tuple(name for name, _ in self.badges)


def fact_fields(catalog: Catalog, product: Product) -> FactFields:
    """Work out once which fields a product's config fact needs."""
    badges = tuple((field_name("has", badge.id), badge.id) for badge, _ in catalog.badges_unlocking(product.id))
    addons = tuple((field_name("on", addon_id), field_name("q", addon_id), addon_id)
                   for addon_id in catalog.addons.get(product.id, {}))
    return FactFields(badges, addons)


def product_rules(catalog: Catalog, product: Product) -> list[CompiledRule]:
    """Generate every compiled rule of one product."""
    rules: list[CompiledRule] = []
    add = rules.append
    unlocking = catalog.badges_unlocking(product.id)
    has = {badge.id: field_name("has", badge.id) for badge, _ in unlocking}

    # Stage 1: entitlement by badge, refusals and notices on the config fact alone.
    for badge, unlock in unlocking:
        conds = [IS_CONFIG, eq(has[badge.id], True)]
        if unlock.min_version:
            conds.append(gte("version_n", version_number(unlock.min_version)))
        add(CompiledRule(f"{badge.rule}#{product.id}", badge.rule, unlock.where, "entitle", "entitled", 1,
                         tuple(conds), {"product": product.id, "min_version": unlock.min_version}))
    add(CompiledRule(f"{product.rule}#not-entitled", product.rule, product.where, "violation", "not-entitled", 1,
                     (IS_CONFIG,) + tuple(eq(name, False) for name in has.values()),
                     {"badges": sorted(has)}))
    for badge, unlock in unlocking:
        if not unlock.min_version:
            continue
        conds = [IS_CONFIG, eq(has[badge.id], True), lt("version_n", version_number(unlock.min_version))]
        for other, other_unlock in unlocking:
            if other.id == badge.id:
                continue
            if other_unlock.min_version is None:
                conds.append(eq(has[other.id], False))
            else:
                conds.append(either(eq(has[other.id], False),
                                    lt("version_n", version_number(other_unlock.min_version))))
        add(CompiledRule(f"{badge.rule}#{product.id}-version", badge.rule, unlock.where_version or unlock.where,
                         "violation", "version-too-low", 1, tuple(conds),
                         {"product": product.id, "min_version": unlock.min_version}))
    for tier in product.tiers:
        for position, former in enumerate(tier.former_names):
            add(CompiledRule(f"{tier.rule}#former-{former}", tier.rule,
                             tier.spots.get(f"former_names.{position}", tier.where), "notice", "former-name", 1,
                             (IS_CONFIG, eq("tier_written", former)), {"former": former, "tier": tier.id}))

    # Stage 2: joined with the entitlement.
    license_rule = f"license.{product.id}"
    license_where = product.spots.get("licenses", product.where)
    offered = product.licenses
    add(CompiledRule(f"{license_rule}#not-offered", license_rule, license_where, "violation",
                     "license-not-offered", 2, (IS_CONFIG,) + tuple(neq("license", model) for model in offered),
                     {"offered": list(offered)}))
    if product.terms:
        add(CompiledRule(f"{license_rule}#term", license_rule, product.spots.get("licenses.subscription.terms",
                                                                                 license_where),
                         "violation", "term-not-offered", 2,
                         (IS_CONFIG, eq("license", SUBSCRIPTION)) + tuple(neq("term", term) for term in product.terms),
                         {"terms": list(product.terms)}))
        for term in product.terms:
            add(CompiledRule(f"{license_rule}#subscription-{term}", license_rule, license_where, "bom", "offer", 2,
                             (IS_CONFIG, eq("license", SUBSCRIPTION), eq("term", term)),
                             {"offer": f"{SUBSCRIPTION}-{term}"}))
    if product.perpetual:
        add(CompiledRule(f"{license_rule}#perpetual", license_rule, license_where, "bom", "offer", 2,
                         (IS_CONFIG, eq("license", PERPETUAL)), {"offer": PERPETUAL}))
        add(CompiledRule(f"{license_rule}#perpetual-term", license_rule, license_where, "notice", "term-ignored", 2,
                         (IS_CONFIG, eq("license", PERPETUAL), gt("term", 0)), {}))
    for tier in product.tiers:
        tier_is = eq("tier", tier.id)
        add(CompiledRule(f"{tier.rule}#over-limit", tier.rule, tier.spots.get("devices.max", tier.where),
                         "violation", "over-limit", 2, (IS_CONFIG, tier_is, gt("devices", tier.devices_max)),
                         {"max": tier.devices_max, "tier": tier.id}))
    ranks = {tier.id: tier.rank for tier in product.tiers}
    for addon in catalog.addons.get(product.id, {}).values():
        on = field_name("on", addon.id)
        if addon.requires_tier in ranks:
            add(CompiledRule(f"{addon.rule}#requires-tier", addon.rule, addon.spots["requires.tier"], "violation",
                             "requires-tier", 2, (IS_CONFIG, eq(on, True),
                              Cond({"$lt": {"tier_rank": ranks[addon.requires_tier]}},
                                   f"tier below {addon.requires_tier}", ("tier", "tier_rank"))),
                             {"addon": addon.id, "name": addon.name, "tier": addon.requires_tier}))
        for position, other in enumerate(addon.requires_addons):
            add(CompiledRule(f"{addon.rule}#requires-{other}", addon.rule, addon.spots[f"requires.addons.{position}"],
                             "violation", "requires-addon", 2,
                             (IS_CONFIG, eq(on, True), eq(field_name("on", other), False)),
                             {"addon": addon.id, "name": addon.name, "other": other}))
        for position, other in enumerate(addon.excludes):
            add(CompiledRule(f"{addon.rule}#excludes-{other}", addon.rule, addon.spots[f"excludes.{position}"],
                             "violation", "excluded", 2,
                             (IS_CONFIG, eq(on, True), eq(field_name("on", other), True)),
                             {"addon": addon.id, "name": addon.name, "other": other}))
        if addon.max_quantity is not None:
            add(CompiledRule(f"{addon.rule}#over-limit", addon.rule, addon.spots.get("quantity.max", addon.where),
                             "violation", "over-limit", 2,
                             (IS_CONFIG, eq(on, True), gt(field_name("q", addon.id), addon.max_quantity)),
                             {"addon": addon.id, "name": addon.name, "max": addon.max_quantity}))
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


def engine_rule(rule: CompiledRule) -> dict:
    """Return the durable_rules dict form of a compiled rule."""
    conds = rule.conds if rule.stage == 1 else (IS_ENTITLED,) + rule.conds[1:]
    return {"all": [{"c": {"$and": [cond.spec for cond in conds]}}], "run": _action(rule.key, rule.kind == "entitle")}


def shard(rules: list[CompiledRule]) -> list[list[CompiledRule]]:
    """Split a product's rules into shards: stage-1 rules go everywhere they are needed."""
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
    fields = {product.id: fact_fields(catalog, product) for product in catalog.products.values()}
    for product in catalog.products.values():
        rules = product_rules(catalog, product)
        _check_stages(rules, fields[product.id])
        compiled.update((rule.key, rule) for rule in rules)
        plans[product.id] = []
        reasons: dict[str, None] = {}
        for index, group in enumerate(shard(rules)):
            name = f"{product.id}@{catalog.rules_version}.{serial}" + (f"#{index}" if index else "")
            definition = {rule.key: engine_rule(rule) for rule in group}
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
    return CompiledCatalog(catalog, engine, shards, compiled, fields)


def _check_stages(rules: list[CompiledRule], fields: FactFields) -> None:
    """Make sure each rule tests only the fields of the fact its stage sees (else it could never fire)."""
    stage_one = set(fields.stage_one)
    for rule in rules:
        tested = set(rule.fields) - {"t"}
        if (rule.stage == 1) != (tested <= stage_one):
            raise RuntimeError(f"compiler bug: {rule.key} (stage {rule.stage}) tests {sorted(tested)}")


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
