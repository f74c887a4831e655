"""Semantic checks: what a JSON Schema cannot say about a catalogue.

Each check is a function registered in CHECKS under its problem code(s); its docstring is its user
documentation, with a failing example. Checks never stop at the first problem.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterator

from engine.catalogue.check_conditions import check_conditions
from engine.catalogue.model import VERSION_BASE, VERSION_PARTS, Catalog, Product, version_key
from engine.problem import Location, Problem, did_you_mean


def check_duplicate_ids(catalog: Catalog) -> Iterator[Problem]:
    """duplicate-id: two products, badges, tiers of one product or add-ons of one product share an id.

    Failing: `tiers: [{id: advanced, ...}, {id: advanced, ...}]`. Each id names one thing for good.
    """
    checks = [
        ("badges.yaml", ("badges",), None, "badge"),
        ("tiers.yaml", ("products",), None, "product"),
        ("tiers.yaml", ("products",), "tiers", "tier"),
        ("addons.yaml", ("addons",), None, "add-on"),
        ("addons.yaml", ("devices",), None, "device licence"),
    ]
    for file, path, nested, kind in checks:
        source = catalog.sources.get(file)
        if source is None:
            continue
        items = source.data.get(path[0], []) or []
        if nested:
            groups = [(path + (index, nested), item["id"], item.get(nested, [])) for index, item in enumerate(items)]
        else:
            groups = [(path, None, items)]
        for group_path, owner, group in groups:
            seen: dict[tuple, int] = {}
            for index, item in enumerate(group):
                key = _identity(kind, item)
                if key in seen:
                    label = f"{kind} '{key[-1]}'" + (f" of {key[0]}" if kind in ("add-on",) else "")
                    first = source.where(group_path + (seen[key], "id" if "id" in item else "product"))
                    rule = _rule_for(kind, owner, item)
                    yield Problem(
                        "duplicate-id",
                        f"{label} is defined twice (first at line {first.line})",
                        source.where(group_path + (index, "id" if "id" in item else "product")),
                        rule=rule,
                        hint="rename or remove one of them",
                    )
                else:
                    seen[key] = index
    for product in catalog.products.values():
        pairs = Counter((upgrade.source, upgrade.target) for upgrade in product.upgrades)
        reported = set()
        for upgrade in product.upgrades:
            pair = (upgrade.source, upgrade.target)
            if pairs[pair] > 1 and pair in reported:
                yield Problem("duplicate-id", f"upgrade path {pair[0]} -> {pair[1]} is declared twice",
                              upgrade.where, rule=upgrade.rule, hint="remove one of them")
            reported.add(pair)


def _identity(kind: str, item: dict) -> tuple:
    if kind == "add-on":
        return (item["product"], item["id"])
    if kind == "device licence":
        return (item["product"],)
    return (item["id"],)


def _rule_for(kind: str, owner: str | None, item: dict) -> str:
    if kind == "tier":
        return f"tier.{owner}.{item['id']}"
    if kind == "add-on":
        return f"addon.{item['product']}.{item['id']}"
    if kind == "device licence":
        return f"devices.{item['product']}"
    return f"{'product' if kind == 'product' else 'badge'}.{item['id']}"


def check_references(catalog: Catalog) -> Iterator[Problem]:
    """unknown-ref, unknown-version: a badge, add-on, device licence or upgrade names something undefined.

    Failing: `upgrades: [{from: essential, to: advnced}]` -> did you mean 'advanced'?
    """
    products = catalog.products
    for badge in catalog.badges.values():
        for unlock in badge.unlocks:
            product = products.get(unlock.product)
            if product is None:
                yield _unknown("badge unlocks product", unlock.product, products, unlock.where, badge.rule)
            elif unlock.min_version is not None and unlock.min_version not in product.versions:
                yield Problem("unknown-version",
                              f"minimum version '{unlock.min_version}' is not a version of {product.id}",
                              unlock.where_version or unlock.where, rule=badge.rule,
                              hint=did_you_mean(unlock.min_version, product.versions)
                              or "versions: " + ", ".join(product.versions))
    for product in products.values():
        tier_ids = [tier.id for tier in product.tiers]
        for upgrade in product.upgrades:
            for name, where in ((upgrade.source, upgrade.where_source), (upgrade.target, upgrade.where_target)):
                if name not in tier_ids:
                    yield _unknown("upgrade path names tier", name, tier_ids, where, upgrade.rule)
    for product_id, addons in catalog.addons.items():
        for addon in addons.values():
            if product_id not in products:
                yield _unknown("add-on belongs to product", product_id, products, addon.spots["product"], addon.rule)
                continue
            for position, other in enumerate(addon.requires_addons):
                if other not in addons:
                    yield _unknown("add-on requires add-on", other, addons, addon.spots[f"requires.addons.{position}"],
                                   addon.rule)
            for position, other in enumerate(addon.excludes):
                if other not in addons:
                    yield _unknown("add-on excludes add-on", other, addons, addon.spots[f"excludes.{position}"],
                                   addon.rule)
    for license in catalog.devices.values():
        if license.product not in products:
            yield _unknown("device licence belongs to product", license.product, products, license.where,
                           license.rule)


def _unknown(what: str, name: str, choices, where: Location, rule: str) -> Problem:
    return Problem("unknown-ref", f"{what} '{name}', which is not defined", where, rule=rule,
                   hint=did_you_mean(name, choices) or "defined: " + ", ".join(sorted(choices)[:12]))


def check_commercial_references(catalog: Catalog) -> Iterator[Problem]:
    """duplicate-reference, missing-reference, unknown-offer: every sellable item has one unique SKU per offer.

    Failing: two tiers both sold as `EPO-ESS-SUB-1Y`, or a tier with no `subscription-36` reference while the
    product sells 36-month terms, or a `perpetual` reference on a product that is not sold perpetually.
    """
    # Where a reference is written is looked up only for a problem: a large catalogue has tens of thousands.
    seen: dict[str, tuple] = {}
    for rule, where, references, product, spot in _priced_items(catalog):
        offers = product.offers if product else ()
        for offer, reference in references.items():
            if product and offer not in offers:
                yield Problem("unknown-offer", f"reference for '{offer}', which {product.id} does not sell",
                              _reference_at(spot, offer, where), rule=rule, hint="sold: " + ", ".join(offers))
            if reference in seen:
                first_rule, *first = seen[reference]
                yield Problem("duplicate-reference",
                              f"commercial reference {reference} is also used by {first_rule} "
                              f"({_reference_at(*first)})",
                              _reference_at(spot, offer, where), rule=rule,
                              hint="every sellable item needs its own reference")
            else:
                seen[reference] = (rule, spot, offer, where)
        for offer in offers:
            if offer not in references:
                yield Problem("missing-reference", f"no commercial reference for '{offer}'",
                              spot("references") or where, rule=rule,
                              hint=f"add `{offer}: <SKU>` under references")
    for product in catalog.products.values():
        sells_devices = any(tier.devices_max > tier.devices_included for tier in product.tiers)
        if sells_devices and product.id not in catalog.devices:
            yield Problem("missing-reference", f"{product.id} tiers allow extra devices but no device licence is sold",
                          product.where, rule=product.rule,
                          hint=f"add a `devices:` entry for product {product.id} in addons.yaml")


def _reference_at(spot, offer: str, where: Location) -> Location:
    return spot(f"references.{offer}") or where


def _priced_items(catalog: Catalog):
    for product in catalog.products.values():
        for tier in product.tiers:
            yield tier.rule, tier.where, tier.references, product, tier.spots.get
    for product_id, addons in catalog.addons.items():
        for addon in addons.values():
            yield addon.rule, addon.where, addon.references, catalog.products.get(product_id), addon.spots.get
    for license in catalog.devices.values():
        source = catalog.sources["addons.yaml"]
        index = next(i for i, item in enumerate(source.data.get("devices", [])) if item["product"] == license.product)

        def spot(name: str, index=index, source=source):
            return source.locations.get(("devices", index) + tuple(name.split(".")))

        yield license.rule, license.where, license.references, catalog.products.get(license.product), spot


def check_upgrade_paths(catalog: Catalog) -> Iterator[Problem]:
    """downgrade, cycle, unreachable: upgrades go upward only, form no cycle, and reach every tier.

    Failing: `{from: advanced, to: essential}` (a downgrade), or a tier `expert` that no path leads to.
    """
    for product in catalog.products.values():
        ranks = {tier.id: tier.rank for tier in product.tiers}
        for upgrade in product.upgrades:
            if upgrade.source in ranks and upgrade.target in ranks and ranks[upgrade.target] <= ranks[upgrade.source]:
                yield Problem("downgrade",
                              f"upgrade path goes from {upgrade.source} down to {upgrade.target}",
                              upgrade.where_target, rule=upgrade.rule,
                              hint="tiers are listed lowest first; upgrades only go to a later tier")
        yield from _cycles(product)
        broken = any(name not in ranks for upgrade in product.upgrades for name in (upgrade.source, upgrade.target))
        if not product.tiers or broken:
            continue  # an unknown tier in a path is reported already; reachability would only echo it
        reached = {product.tiers[0].id}
        frontier = [product.tiers[0].id]
        while frontier:
            current = frontier.pop()
            for target in product.upgrade_targets(current):
                if target not in reached:
                    reached.add(target)
                    frontier.append(target)
        for tier in product.tiers[1:]:
            if tier.id not in reached:
                yield Problem("unreachable",
                              f"no upgrade path leads to tier {tier.id} from the base tier {product.tiers[0].id}",
                              tier.where, rule=tier.rule,
                              hint=f"add e.g. `{{from: {product.tiers[tier.rank - 1].id}, to: {tier.id}}}` to upgrades")


def _cycles(product: Product) -> Iterator[Problem]:
    graph: dict[str, list] = {}
    for upgrade in product.upgrades:
        graph.setdefault(upgrade.source, []).append(upgrade)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    reported: set[frozenset] = set()

    # Depth-first with an explicit stack: a long upgrade chain must not hit Python's recursion limit.
    for tier in product.tiers:
        if tier.id in state:
            continue
        state[tier.id] = 1
        stack = [(tier.id, iter(graph.get(tier.id, ())))]
        trail: list = []  # the upgrades taken from tier to the node on top of the stack
        while stack:
            node, edges = stack[-1]
            upgrade = next(edges, None)
            if upgrade is None:
                state[node] = 2
                stack.pop()
                if trail:
                    trail.pop()
            elif state.get(upgrade.target) == 1:
                start = next(i for i, step in enumerate(trail + [upgrade]) if step.source == upgrade.target)
                loop = (trail + [upgrade])[start:]
                key = frozenset(step.rule for step in loop)
                if key not in reported:
                    reported.add(key)
                    names = " -> ".join([step.source for step in loop] + [upgrade.target])
                    yield Problem("cycle", f"upgrade paths form a cycle: {names}", upgrade.where_target,
                                  rule=upgrade.rule, hint="remove the path that goes back down")
            elif state.get(upgrade.target) is None:
                state[upgrade.target] = 1
                trail.append(upgrade)
                stack.append((upgrade.target, iter(graph.get(upgrade.target, ()))))


def check_prerequisites(catalog: Catalog) -> Iterator[Problem]:
    """impossible-prerequisite, bad-limit: a prerequisite that can never hold, or a limit that makes no sense.

    Failing: an add-on that requires tier `premium` its product lacks, requires itself, requires an add-on it
    excludes (or that excludes it), or requires an add-on whose own prerequisites can never hold;
    a tier that includes more devices than its maximum.
    """
    impossible: dict[tuple[str, str], str] = {}
    for product_id, addons in catalog.addons.items():
        product = catalog.products.get(product_id)
        if product is None:
            continue
        tier_ids = [tier.id for tier in product.tiers]
        for addon in addons.values():
            reason, where = _impossible_reason(catalog, product, addon, tier_ids)
            if reason:
                impossible[(product_id, addon.id)] = reason
                yield Problem("impossible-prerequisite", reason, where, rule=addon.rule,
                              hint=_prerequisite_hint(addon, tier_ids))
        # An add-on that requires an impossible one is impossible too.
        changed = True
        while changed:
            changed = False
            for addon in addons.values():
                if (product_id, addon.id) in impossible:
                    continue
                for position, other in enumerate(addon.requires_addons):
                    if (product_id, other) in impossible:
                        reason = f"requires add-on {other}, which can never be configured"
                        impossible[(product_id, addon.id)] = reason
                        changed = True
                        yield Problem("impossible-prerequisite", reason,
                                      addon.spots[f"requires.addons.{position}"], rule=addon.rule,
                                      hint=f"fix {other} first")
                        break
    for product in catalog.products.values():
        for tier in product.tiers:
            if tier.devices_included > tier.devices_max:
                yield Problem("bad-limit",
                              f"tier includes {tier.devices_included} devices but allows at most {tier.devices_max}",
                              tier.spots.get("devices.included", tier.where), rule=tier.rule,
                              hint="raise max or lower included")


def _impossible_reason(catalog: Catalog, product: Product, addon, tier_ids) -> tuple[str, Location | None]:
    if addon.requires_tier and addon.requires_tier not in tier_ids:
        elsewhere = [other.id for other in catalog.products.values() if other.tier(addon.requires_tier)]
        if elsewhere:
            return (f"requires tier {addon.requires_tier}, which {product.id} does not have "
                    f"(only {', '.join(elsewhere)} does)", addon.spots["requires.tier"])
        return (f"requires tier {addon.requires_tier}, which {product.id} does not have",
                addon.spots["requires.tier"])
    addons = catalog.addons[product.id]
    for position, other in enumerate(addon.requires_addons):
        where = addon.spots[f"requires.addons.{position}"]
        if other == addon.id:
            return "requires itself", where
        if other in addon.excludes:
            return f"requires add-on {other} and also excludes it", where
        required = addons.get(other)
        if required and addon.id in required.excludes:
            return f"requires add-on {other}, which excludes {addon.id}", where
    if addon.id in addon.excludes:
        return "excludes itself", addon.spots.get("excludes", addon.where)
    return "", None


def _prerequisite_hint(addon, tier_ids) -> str:
    if addon.requires_tier and addon.requires_tier not in tier_ids:
        return did_you_mean(addon.requires_tier, tier_ids) or "tiers: " + ", ".join(tier_ids)
    return "remove the contradicting requirement or exclusion"


def check_badges(catalog: Catalog) -> Iterator[Problem]:
    """no-unlock, not-unlocked: a badge that unlocks nothing, or a product no badge unlocks.

    Failing: `unlocks: []`, or a product `pso` in tiers.yaml that no badge lists: nobody could configure it.
    """
    for badge in catalog.badges.values():
        if not badge.unlocks:
            yield Problem("no-unlock", f"badge {badge.id} unlocks no product", badge.where, rule=badge.rule,
                          hint="list the products under unlocks, or remove the badge")
    unlocked = {unlock.product for badge in catalog.badges.values() for unlock in badge.unlocks}
    for product in catalog.products.values():
        if product.id not in unlocked:
            yield Problem("not-unlocked", f"no badge unlocks product {product.id}; no partner could configure it",
                          product.where, rule=product.rule, hint="add it to a badge's unlocks in badges.yaml")
        else:
            floors = [unlock.min_version for _, unlock in catalog.badges_unlocking(product.id)]
            if all(floor and version_key(floor) > version_key(product.latest_version) for floor in floors):
                yield Problem("not-unlocked", f"every badge requires a version of {product.id} newer than any sold",
                              product.where, rule=product.rule, hint="lower min_version in badges.yaml")


def check_former_names(catalog: Catalog) -> Iterator[Problem]:
    """former-name-clash: a tier's former name is a live tier id, or the former name of another tier.

    Failing: `{id: advanced-plus, former_names: [advanced]}` while `advanced` is still a tier.
    """
    for product in catalog.products.values():
        live = {tier.id for tier in product.tiers}
        owners: dict[str, str] = {}
        for tier in product.tiers:
            for position, name in enumerate(tier.former_names):
                where = tier.spots.get(f"former_names.{position}", tier.where)
                if name in live:
                    yield Problem("former-name-clash", f"former name '{name}' is the id of a live tier",
                                  where, rule=tier.rule, hint="a request naming it would be ambiguous; remove it")
                elif name in owners:
                    yield Problem("former-name-clash",
                                  f"former name '{name}' is also a former name of tier {owners[name]}",
                                  where, rule=tier.rule, hint="keep it on one tier only")
                else:
                    owners[name] = tier.id


def check_versions(catalog: Catalog) -> Iterator[Problem]:
    """unsupported-version: a version with more than 3 parts, or a part of 100000 or more.

    Failing: `versions: ["7.0.1.2"]`. The rule engine compares versions as one number built from 3 parts.
    """
    def fits(version: str) -> bool:
        parts = version_key(version)
        return len(parts) <= VERSION_PARTS and all(part < VERSION_BASE for part in parts)

    for product in catalog.products.values():
        for position, version in enumerate(product.versions):
            if not fits(version):
                yield Problem("unsupported-version", f"version '{version}' cannot be compared",
                              product.spots.get(f"versions.{position}", product.where), rule=product.rule,
                              hint=f"use at most {VERSION_PARTS} parts, each below {VERSION_BASE}")
    for badge in catalog.badges.values():
        for unlock in badge.unlocks:
            if unlock.min_version and not fits(unlock.min_version):
                yield Problem("unsupported-version", f"version '{unlock.min_version}' cannot be compared",
                              unlock.where_version or unlock.where, rule=badge.rule,
                              hint=f"use at most {VERSION_PARTS} parts, each below {VERSION_BASE}")


# The registry: problem codes -> the check that reports them, in the order they run.
CHECKS: dict[str, Callable[[Catalog], Iterator[Problem]]] = {
    "duplicate-id": check_duplicate_ids,
    "unknown-ref": check_references,
    "duplicate-reference": check_commercial_references,
    "downgrade": check_upgrade_paths,
    "impossible-prerequisite": check_prerequisites,
    "no-unlock": check_badges,
    "former-name-clash": check_former_names,
    "unsupported-version": check_versions,
    "unknown-fact": check_conditions,
}


def check_catalog(catalog: Catalog, extra_checks=()) -> list[Problem]:
    """Run every registered check and return all problems found."""
    problems: list[Problem] = []
    for check in list(CHECKS.values()) + list(extra_checks):
        problems.extend(check(catalog))
    return problems
