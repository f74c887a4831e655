"""Checks of the conditions written in the rule files, at load time, every problem located at its comparison.

- unknown-fact, unknown-operator, type-mismatch, unknown-value, bad-value: what resolving a condition
  against its product finds (conditions.resolve), for every `when`, `require` and prerequisite version;
- unknown-version: a `requires.min_version` that is not a version of its product;
- condition-never-holds, condition-always-holds: decided exactly over the facts' domains (see `decide`);
- duplicate-rule, contradictory-rules: two rules of constraints.yaml that say the same thing, or that
  together refuse everything, and constraints the product's own limits make impossible to meet.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Iterator

from engine.catalogue.conditions import (RANK, All, Node, Not, Scope, Test, conjunction, evaluate, fact_named,
                                         leaves, resolve_tree, text)
from engine.catalogue.model import Catalog, Product, scope_of, version_number
from engine.catalogue.policies import constraints, vouchers
from engine.problem import Location, Problem, did_you_mean

# Past this many fact assignments a condition is not decided (none of the shipped ones comes near).
MOST_ASSIGNMENTS = 200_000
# The least value a request can give each number fact (the request schema's minimums; 0 for perpetual terms).
LEAST = {"configuration.devices": 0, "configuration.term_months": 0, "addons.count": 0, "change.month": 1,
         "change.months_left": 0}
OTHER = "\x00other"  # a text nobody writes: "any other value" of a text fact


@dataclass(frozen=True)
class Site:
    """One condition written in a rule file: whose it is, what it is for, and the product it is checked against."""

    rule: str
    product: Product
    node: Node
    role: str  # when | require
    what: str  # how a product manager names the entry, e.g. "the badge's unlock of epo"


def sites(catalog: Catalog) -> Iterator[Site]:
    """Yield every condition of the core rule files, with the product it is about."""
    products = catalog.products
    for badge in catalog.badges.values():
        for unlock in badge.unlocks:
            if unlock.when is not None and unlock.product in products:
                yield Site(badge.rule, products[unlock.product], unlock.when, "when",
                           f"badge {badge.id} unlocks {unlock.product}")
    for product in products.values():
        for model, when in product.offer_when.items():
            yield Site(f"license.{product.id}", product, when, "when", f"{product.id} is sold {model}")
        for tier in product.tiers:
            if tier.when is not None:
                yield Site(tier.rule, product, tier.when, "when", f"the limits of tier {tier.id}")
        for upgrade in product.upgrades:
            if upgrade.when is not None:
                yield Site(upgrade.rule, product, upgrade.when, "when",
                           f"the upgrade path {upgrade.source} -> {upgrade.target}")
    for product_id, addons in catalog.addons.items():
        for addon in addons.values():
            if addon.when is not None and product_id in products:
                yield Site(addon.rule, products[product_id], addon.when, "when",
                           f"the requirements of add-on {addon.id}")
    for match in match_conditions(catalog):
        yield Site(match.rule, products[catalog.references[match.line].product], match.when, "when",
                   f"the match of {match.voucher} for {match.line}")


def match_conditions(catalog: Catalog) -> list:
    """Return the voucher matches that carry a condition, on a line some product sells."""
    rules = catalog.extras.get(vouchers.FILE)
    if rules is None:
        return []
    return [match for match in rules.matches if match.when is not None and match.line in catalog.references
            and catalog.references[match.line].product in catalog.products]


def check_conditions(catalog: Catalog) -> Iterator[Problem]:
    """unknown-fact, unknown-operator, type-mismatch, unknown-value, bad-value, condition-never-holds, ...

    Failing: `partner.contry: FR` -> did you mean 'partner.country'?; `configuration.tier: {at_least: advnced}`
    -> did you mean 'advanced'?; `partner.country: fr` -> write FR; `configuration.devices: {at_least: 0}`
    always holds.
    """
    _OUTCOMES.clear()
    for site in sites(catalog):
        tree, problems = resolved(site, scope_of(catalog, site.product))
        yield from problems
        if tree is not None:
            yield from decide_one(site, tree)
    yield from check_min_versions(catalog)
    yield from check_further(catalog)


def resolved(site: Site, scope: Scope) -> tuple[Node | None, list[Problem]]:
    """Return the resolved tree (None when something is wrong with it) and its problems, tagged with the rule."""
    problems: list[Problem] = []
    tree = resolve_tree(site.node, scope, problems)
    return (None if problems else tree), [replace(problem, rule=site.rule) for problem in problems]


def check_min_versions(catalog: Catalog) -> Iterator[Problem]:
    """unknown-version: a product's, tier's or add-on's `requires.min_version` is not a version of the product."""
    for product in catalog.products.values():
        entries = [(product.rule, product.min_version, product.spots)]
        entries += [(tier.rule, tier.min_version, tier.spots) for tier in product.tiers]
        entries += [(addon.rule, addon.min_version, addon.spots)
                    for addon in catalog.addons.get(product.id, {}).values()]
        for rule, version, spots in entries:
            if version is not None and version not in product.versions:
                yield Problem("unknown-version", f"minimum version '{version}' is not a version of {product.id}",
                              spots.get("requires.min_version", product.where), rule=rule,
                              hint=did_you_mean(version, product.versions)
                              or f"versions of {product.id}: " + ", ".join(product.versions))


# ---------------------------------------------------------------------------------------------------------
# Deciding a condition over the facts it mentions


def domain(name: str, product: Product, constants: dict[str, set], tiers_limited: bool) -> list[dict]:
    """Return the assignments of one fact that decide every comparison written on it (engine values).

    Finite facts take each value they can have; numbers and dates take each constant written, one below and
    one above (and the least value a request can give), which meets every interval the operators cut out.
    An optional fact may also be missing.
    """
    fact = fact_named(name)
    written = constants.get(name, set())
    if name == "partner.badges" or name == "addons":
        members = sorted(written)
        found = [{name: frozenset(chosen)} for size in range(len(members) + 1)
                 for chosen in itertools.combinations(members, size)]
    elif name == "configuration.product":
        found = [{name: product.id}]
    elif name == "configuration.license":
        found = [{name: license} for license in product.licenses]
    elif name == "configuration.term_months":
        found = [{name: term} for term in product.terms + ((0,) if product.perpetual else ())]
    elif name == "configuration.version":
        found = [{name: version_number(version)} for version in product.versions]
    elif fact.kind == "tier":
        found = [{name: tier.id, name + RANK: tier.rank} for tier in product.tiers]
    elif fact.choices:
        found = [{name: choice} for choice in fact.choices]
    elif fact.kind in ("number", "date"):
        points = set()
        for value in written:
            points |= {math.floor(value) - 1, math.floor(value), math.ceil(value), math.ceil(value) + 1}
        if name == "configuration.devices" and tiers_limited:
            for tier in product.tiers:
                points |= {tier.devices_max, tier.devices_max + 1}
        least = LEAST.get(name, 0 if fact.kind == "number" else None)
        if least is not None:
            points = {point for point in points if point >= least} | {least}
        found = [{name: point} for point in sorted(points or {0})]
    else:  # country, text: each value written, and one more
        found = [{name: value} for value in sorted(written) + [OTHER]]
    if fact.optional or name.startswith("addon."):
        found.append({name: None})
    return found


def constants_of(nodes) -> dict[str, set]:
    """Return the engine values each fact is compared with, by fact name."""
    found: dict[str, set] = {}
    for node in nodes:
        for leaf in leaves(node):
            values = leaf.engine if isinstance(leaf.engine, (list, tuple)) else [leaf.engine]
            if leaf.op == "present":
                values = []
            if leaf.op in ("at_least", "at_most") and fact_named(leaf.fact).kind == "tier":
                values = []  # a rank: the tier domain covers it
            found.setdefault(leaf.fact, set()).update(value for value in values if value is not None)
    return found


def assignments(nodes, product: Product) -> Iterator[dict] | None:
    """Yield every assignment of the facts NODES mention, or return None when there are too many to try."""
    names = list(dict.fromkeys(leaf.fact for node in nodes for leaf in leaves(node)))
    if "configuration.devices" in names and "configuration.tier" not in names:
        names.append("configuration.tier")  # a tier's device limit narrows the devices sold
    constants = constants_of(nodes)
    domains = [domain(name, product, constants, True) for name in names]
    if math.prod(len(values) for values in domains) > MOST_ASSIGNMENTS:
        return None
    return ({key: value for part in parts for key, value in part.items()} for parts in itertools.product(*domains))


def within_limits(facts: dict, product: Product) -> bool:
    """Return whether an assignment respects the product's own limits (each tier's device maximum)."""
    devices, tier = facts.get("configuration.devices"), product.tier(facts.get("configuration.tier") or "")
    return devices is None or tier is None or tier.when is not None or devices <= tier.devices_max


@dataclass
class Outcomes:
    """What a condition (given another that must hold) can evaluate to, over every assignment tried."""

    values: set  # True, False, None seen, over any assignment
    sold: set  # the same, over the assignments within the product's limits
    tiers: set  # the tiers of the assignments tried


# The same condition on the same product decides the same way: a large catalogue repeats a few conditions
# on many entries (checking each afresh took seconds). Emptied at the start of every check_conditions run.
_OUTCOMES: dict[tuple, tuple[Product, Outcomes | None]] = {}


def outcomes(node: Node, product: Product, given: Node | None = None) -> Outcomes | None:
    """Return what NODE evaluates to over every assignment where GIVEN holds; None when undecided."""
    key = (shape(node), shape(given), id(product))
    found = _OUTCOMES.get(key)
    if found is not None and found[0] is product:
        return found[1]
    result = _outcomes(node, product, given)
    _OUTCOMES[key] = (product, result)
    return result


def _outcomes(node: Node, product: Product, given: Node | None) -> Outcomes | None:
    nodes = [node] + ([given] if given is not None else [])
    tried = assignments(nodes, product)
    if tried is None:
        return None
    found = Outcomes(set(), set(), set())
    for facts in tried:
        if given is not None and evaluate(given, facts) is not True:
            continue
        value = evaluate(node, facts)
        found.values.add(value)
        found.tiers.add(facts.get("configuration.tier"))
        if within_limits(facts, product):
            found.sold.add(value)
    return found


def decide_one(site: Site, tree: Node) -> Iterator[Problem]:
    """condition-never-holds, condition-always-holds for one resolved `when`: a dead or a redundant entry."""
    yield from _verdicts(site, tree, None)


def _verdicts(site: Site, tree: Node, given: Node | None) -> Iterator[Problem]:
    """Report the comparisons of TREE that never or always hold on their own, else TREE as a whole."""
    product = site.product
    reported = False
    for leaf in leaves(tree):
        found = outcomes(leaf, product)
        if found is None:
            continue
        if True not in found.values:
            reported = True
            yield _never(site, leaf, f"'{leaf.text}' never holds for {product.id}", _domain_hint(leaf, product))
        elif found.values == {True}:
            reported = True
            yield _always(site, leaf, f"'{leaf.text}' always holds for {product.id}")
    if reported:
        return
    found = outcomes(tree, product, given)
    if found is None or not found.values:
        return
    shown = text(tree)
    if True not in found.values:
        condition = f" when {text(given)}" if given is not None else ""
        yield _never(site, tree, f"'{shown}' never holds for {product.id}{condition}",
                     "its comparisons contradict each other")
    elif found.values == {True}:
        condition = f" when {text(given)}" if given is not None else ""
        yield _always(site, tree, f"'{shown}' always holds for {product.id}{condition}")
    elif True not in found.sold:
        yield Problem("contradictory-rules",
                      f"'{shown}' never holds within {product.id}'s own limits ({_limits(product, found.tiers)})",
                      tree.where, rule=site.rule, severity="warning",
                      hint=("every configuration it applies to is refused" if site.role == "require"
                            else f"{site.what} never applies to a configuration that can be sold"))


def _never(site: Site, node: Node, message: str, hint: str) -> Problem:
    if site.role == "require":
        return Problem("condition-never-holds", message, node.where, rule=site.rule,
                       hint=f"every configuration it applies to is refused; {hint}")
    return Problem("condition-never-holds", message, node.where, rule=site.rule, severity="warning",
                   hint=f"{site.what} never applies; {hint}")


def _always(site: Site, node: Node, message: str) -> Problem:
    hint = ("the constraint never refuses anything" if site.role == "require"
            else "it changes nothing: remove it")
    return Problem("condition-always-holds", message, node.where, rule=site.rule, severity="warning", hint=hint)


def _domain_hint(leaf: Test, product: Product) -> str:
    """Say which values the fact can take, for a comparison that never holds."""
    values = {
        "configuration.license": product.licenses,
        "configuration.term_months": product.terms + ((0,) if product.perpetual else ()),
        "configuration.version": product.versions,
        "configuration.tier": tuple(tier.id for tier in product.tiers),
        "configuration.product": (product.id,),
    }.get(leaf.fact)
    if values is not None:
        return f"{leaf.fact} of {product.id} is one of: " + ", ".join(str(value) for value in values)
    least = LEAST.get(leaf.fact)
    return f"{leaf.fact} is never below {least}" if least is not None else "fix the value"


def _limits(product: Product, tiers: set) -> str:
    return ", ".join(f"{tier.id} allows at most {tier.devices_max} devices" for tier in product.tiers
                     if tier.id in tiers)


# ---------------------------------------------------------------------------------------------------------
# constraints.yaml: each rule's conditions, then pairs of rules


def check_further(catalog: Catalog) -> Iterator[Problem]:
    """The conditions of constraints.yaml, duplicate rules, and availability windows that exclude each other."""
    further = catalog.extras.get(constraints.FILE)
    if further is None:
        return
    products = catalog.products
    trees: dict[tuple, Node | None] = {}  # (rule, role) -> resolved tree; a wrong one is None
    for item in (*further.availability, *further.constraints, *further.notices):
        product = products.get(item.product)
        if product is None:
            continue  # constraints.check reports the unknown product
        scope = scope_of(catalog, product)
        kind = type(item).__name__.lower()
        conditions = [("when", item.when)] + ([("require", item.require)] if kind == "constraint" else [])
        for role, node in conditions:
            if node is None:
                trees[(item.rule, role)] = None if role == "require" else ALWAYS
                continue
            site = Site(item.rule, product, node, role, f"{kind} {item.id}")
            tree, problems = resolved(site, scope)
            trees[(item.rule, role)] = tree
            yield from problems
    for constraint in further.constraints:
        when, require = trees.get((constraint.rule, "when")), trees.get((constraint.rule, "require"))
        product = products.get(constraint.product)
        if product is None or when is None:
            continue
        if constraint.when is not None:
            yield from decide_one(Site(constraint.rule, product, constraint.when, "when",
                                       f"constraint {constraint.id}"), when)
        if require is not None:
                yield from _verdicts(Site(constraint.rule, product, constraint.require, "require",
                                      f"constraint {constraint.id}"), require, when if constraint.when else None)
    for item in (*further.availability, *further.notices):
        tree = trees.get((item.rule, "when"))
        if item.when is not None and tree is not None and item.product in products:
            yield from decide_one(Site(item.rule, products[item.product], item.when, "when",
                                       f"{type(item).__name__.lower()} {item.id}"), tree)
    yield from _duplicates(further, trees)
    yield from _exclusive_windows(further, trees, products)


ALWAYS = All((), Location("<always>"))  # a missing `when`: the empty conjunction holds


def shape(node: Node | None):
    """Return a tree's meaning without its locations: equal for two conditions written alike in any order."""
    if node is None:
        return None
    if isinstance(node, Test):
        value = node.engine
        if isinstance(value, (list, tuple)):
            value = frozenset(value)
        return ("test", node.fact, node.op, value)
    if isinstance(node, Not):
        return ("not", shape(node.part))
    return (type(node).__name__, frozenset(shape(part) for part in node.parts))


def _duplicates(further, trees) -> Iterator[Problem]:
    """duplicate-rule: two constraints, notices or windows of one product that say the same thing."""
    groups = [
        (further.constraints, "constraint",
         lambda item: (shape(trees.get((item.rule, "when"))), shape(trees.get((item.rule, "require"))))),
        (further.notices, "notice", lambda item: (shape(trees.get((item.rule, "when"))),)),
        (further.availability, "availability window",
         lambda item: (item.offer, frozenset(item.countries), item.start, item.end,
                       shape(trees.get((item.rule, "when"))))),
    ]
    for items, kind, key in groups:
        seen: dict[tuple, object] = {}
        for item in items:
            roles = ("when", "require") if kind == "constraint" else ("when",)
            if any(trees.get((item.rule, role)) is None for role in roles):
                continue  # a condition with a problem is reported as such
            identity = (item.product,) + key(item)
            first = seen.get(identity)
            if first is None:
                seen[identity] = item
                continue
            yield Problem("duplicate-rule", f"{kind} {item.id} has the same conditions as {first.id} "
                          f"(line {first.where.line})", item.where, rule=item.rule, severity="warning",
                          hint="remove one of them, or merge their messages")


def _exclusive_windows(further, trees, products) -> Iterator[Problem]:
    """contradictory-rules: two availability windows of one offer that no partner and day can both meet."""
    windows = further.availability
    for index, second in enumerate(windows):
        product = products.get(second.product)
        if product is None or trees.get((second.rule, "when")) is None:
            continue
        for first in windows[:index]:
            if first.product != second.product or trees.get((first.rule, "when")) is None:
                continue
            if first.license != second.license or None not in (first.term, second.term) and first.term != second.term:
                continue  # different offers: never both asked of one configuration
            both = conjunction([_applies(first, trees), _applies(second, trees)], second.where)
            allowed = conjunction([_allowed(first), _allowed(second)], second.where)
            found = outcomes(allowed, product, both)
            if found is not None and found.values and True not in found.values:
                yield Problem("contradictory-rules",
                              f"availability windows {first.id} (line {first.where.line}) and {second.id} both apply to "
                              f"{product.id} {_offer(first, second)} and no partner and day meets both",
                              second.where, rule=second.rule,
                              hint="nothing is ever sold: widen one window's countries or dates, or merge them")


def _offer(first, second) -> str:
    return second.offer if second.term is not None else first.offer


def _applies(window, trees) -> Node:
    """Return the condition under which a window applies (its offer and its `when`), resolved."""
    where = window.where_offer
    parts = [Test("configuration.license", "is", window.license, where, window.license)]
    if window.term is not None:
        parts.append(Test("configuration.term_months", "is", window.term, where, window.term))
    if window.when is not None:
        parts.append(trees[(window.rule, "when")])
    return conjunction(parts, where)


def _allowed(window) -> Node:
    """Return what a window allows (countries, from, until) as a resolved condition."""
    parts = []
    if window.countries:
        parts.append(Test("partner.country", "one_of", window.countries, window.where_countries,
                          list(window.countries)))
    if window.start:
        parts.append(Test("date", "at_least", window.start, window.where_start, window.start.toordinal()))
    if window.end:
        parts.append(Test("date", "at_most", window.end, window.where_end, window.end.toordinal()))
    return conjunction(parts, window.where)
