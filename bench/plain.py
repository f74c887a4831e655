"""The plain-Python floor: the catalogue's rule semantics evaluated with ordinary loops and dict look-ups.

Written from the catalogue model (engine/catalogue/model.py), the rule files and the verdicts the engine gives, not
from the compiler. It is what the engine is measured against (bench/inference_bench.py) and checked
against (tests/test_plain_agreement.py): same observable verdict, i.e.

    valid       bool
    violations  sorted list of distinct (rule id, code)
    notices     sorted list of (rule id, code)
    bom         [(reference, quantity, months)] in verdict order: tier, device licence, add-ons in
                catalogue order; empty unless valid

Semantics, stage by stage:
1. Entitlement. Among the partner's badges, those that unlock the product. None: `not-entitled` on the
   product's rule. Otherwise, if no such badge unlocks it at the requested version (or the latest, when no
   version is given; versions compare part by part as numbers), each of them refuses with
   `version-too-low` on its badge rule. Either refusal stops the evaluation: nothing else is checked.
2. Licence: `license-not-offered` when the model is not sold; for a subscription, `term-not-offered`
   when the term is absent or not sold; a perpetual licence with a term gets the notice `term-ignored`.
3. Tier: more devices than the tier's maximum is `over-limit` on the tier's rule.
4. Each chosen add-on (rule `addon.<product>.<id>`): `requires-tier` when the tier ranks below the one it
   needs; `requires-addon` once per required add-on not chosen; `excluded` once per chosen add-on it
   excludes (an exclusion is reported by the add-on that declares it); `over-limit` above its maximum.
5b. constraints.yaml: an offer outside its availability window (countries, from, until) is `not-available`;
   a constraint whose `require` is not known to hold refuses with its code; a notice whose `when` holds is
   said. Their conditions are judged by the reference evaluator (engine.catalogue.conditions), not the engine.
5. Bill of materials, when nothing was refused: the tier's reference (quantity 1), the device licence for
   the devices beyond what the tier includes, each chosen add-on with its quantity; months is the term
   for subscriptions and None for perpetual licences.
Notices whatever the outcome: `version-assumed` (product rule) without a version, `former-name` (tier
rule) when the tier was written by a former name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.catalogue.conditions import evaluate
from engine.catalogue.model import PERPETUAL, SUBSCRIPTION, Catalog, Product, version_key
from engine.catalogue.policies import constraints
from engine.clock import server_clock
from engine.inference.compile import resolved, scope_of
from engine.inference.evaluate import request_facts
from engine.inference.request import Request


@dataclass(frozen=True)
class _ProductIndex:
    """What one product's evaluation needs, looked up once per catalogue."""

    product: Product
    unlocks: dict[str, list[tuple[int, ...] | None]]  # badge id -> minimum versions of its unlock entries
    ranks: dict[str, int]  # tier id -> rank
    latest: str
    addons: list  # Addon, catalogue order


_INDEXES: dict[int, tuple[Catalog, dict[str, _ProductIndex]]] = {}


def _index(catalog: Catalog) -> dict[str, _ProductIndex]:
    """Return (and keep) the per-product look-ups of a catalogue."""
    held = _INDEXES.get(id(catalog))
    if held is not None and held[0] is catalog:
        return held[1]
    unlocks: dict[str, dict[str, list]] = {product_id: {} for product_id in catalog.products}
    for badge in catalog.badges.values():
        for unlock in badge.unlocks:
            minimum = version_key(unlock.min_version) if unlock.min_version is not None else None
            unlocks.setdefault(unlock.product, {}).setdefault(badge.id, []).append(minimum)
    index = {
        product_id: _ProductIndex(
            product=product,
            unlocks=unlocks[product_id],
            ranks={tier.id: tier.rank for tier in product.tiers},
            latest=product.latest_version,
            addons=list(catalog.addons.get(product_id, {}).values()),
        )
        for product_id, product in catalog.products.items()
    }
    _INDEXES[id(catalog)] = (catalog, index)
    return index


def evaluate_plain(catalog: Catalog, request: Request) -> dict[str, Any]:
    """Evaluate a parsed, complete request and return its observable verdict."""
    configuration = request.configuration
    entry = _index(catalog)[configuration.product]
    product = entry.product
    violations: set[tuple[str, str]] = set()
    notices: list[tuple[str, str]] = []

    if configuration.version is None:
        notices.append((product.rule, "version-assumed"))
    tier = product.tier(configuration.tier)
    if configuration.tier_written and configuration.tier_written != configuration.tier:
        notices.append((tier.rule, "former-name"))

    # 1. entitlement
    version = version_key(configuration.version or entry.latest)
    unlocking = [badge_id for badge_id in request.partner.badges if badge_id in entry.unlocks]
    if not unlocking:
        violations.add((product.rule, "not-entitled"))
    elif not any(minimum is None or version >= minimum
                 for badge_id in unlocking for minimum in entry.unlocks[badge_id]):
        for badge_id in unlocking:
            violations.add((catalog.badges[badge_id].rule, "version-too-low"))
    if violations:
        return _verdict(violations, notices, [])

    # 2. the product's, tier's and add-ons' minimum versions (requires.min_version)
    if product.min_version and version < version_key(product.min_version):
        violations.add((product.rule, "version-too-low"))
    if tier.min_version and version < version_key(tier.min_version):
        violations.add((tier.rule, "requires-version"))

    # 3. licence model and term
    license_rule = f"license.{product.id}"
    offer = None
    if configuration.license == SUBSCRIPTION:
        if not product.terms:
            violations.add((license_rule, "license-not-offered"))
        elif configuration.term_months not in product.terms:
            violations.add((license_rule, "term-not-offered"))
        else:
            offer = f"{SUBSCRIPTION}-{configuration.term_months}"
    elif configuration.license == PERPETUAL:
        if not product.perpetual:
            violations.add((license_rule, "license-not-offered"))
        else:
            offer = PERPETUAL
            if configuration.term_months:
                notices.append((license_rule, "term-ignored"))

    # 4. tier device limit
    devices = configuration.devices
    if devices > tier.devices_max:
        violations.add((tier.rule, "over-limit"))

    # 5. add-ons
    chosen = {addon.id: addon.quantity for addon in configuration.addons}
    rank = tier.rank
    for addon in entry.addons:
        if addon.id not in chosen:
            continue
        if addon.requires_tier is not None and rank < entry.ranks[addon.requires_tier]:
            violations.add((addon.rule, "requires-tier"))
        for other in addon.requires_addons:
            if other not in chosen:
                violations.add((addon.rule, "requires-addon"))
        for other in addon.excludes:
            if other in chosen:
                violations.add((addon.rule, "excluded"))
        if addon.max_quantity is not None and chosen[addon.id] > addon.max_quantity:
            violations.add((addon.rule, "over-limit"))
        if addon.min_version and version < version_key(addon.min_version):
            violations.add((addon.rule, "requires-version"))
    _further(catalog, product, request, violations, notices)
    if violations or offer is None:
        return _verdict(violations, notices, [])

    # 6. bill of materials
    months = configuration.term_months if configuration.license == SUBSCRIPTION else None
    bom = []
    reference = tier.references.get(offer)
    if reference is not None:
        bom.append((reference, 1, months))
    license = catalog.devices.get(product.id)
    if license is not None and devices > tier.devices_included:
        reference = license.references.get(offer)
        if reference is not None:
            bom.append((reference, devices - tier.devices_included, months))
    for addon in entry.addons:
        if addon.id in chosen:
            reference = addon.references.get(offer)
            if reference is not None:
                bom.append((reference, chosen[addon.id], months))
    return _verdict(violations, notices, bom)


def _further(catalog: Catalog, product: Product, request: Request, violations: set, notices: list) -> None:
    """constraints.yaml, plainly: an offer outside its window is not-available; constraints and notices."""
    further = catalog.extras.get(constraints.FILE)
    if further is None:
        return
    configuration, partner = request.configuration, request.partner
    day = request.date or server_clock().today()
    for window in further.availability:
        if window.product != product.id or configuration.license != window.license:
            continue
        if window.term is not None and configuration.term_months != window.term:
            continue
        if window.when is not None and _holds(catalog, product, request, window.when) is not True:
            continue
        inside = ((not window.countries or partner.country in window.countries)
                  and (window.start is None or day >= window.start) and (window.end is None or day <= window.end))
        if not inside:
            violations.add((window.rule, "not-available"))
    for constraint in further.constraints:
        if constraint.product == product.id and (
                constraint.when is None or _holds(catalog, product, request, constraint.when) is True) and \
                _holds(catalog, product, request, constraint.require) is not True:
            violations.add((constraint.rule, constraint.code))
    for notice in further.notices:
        if notice.product == product.id and (notice.when is None or _holds(catalog, product, request, notice.when)):
            notices.append((notice.rule, notice.code))


def _holds(catalog: Catalog, product: Product, request: Request, node) -> bool | None:
    """Evaluate a written condition with the reference evaluator (no rule engine)."""
    tree = resolved(node, scope_of(catalog, product))
    facts = request_facts(product, request, addons=tuple(catalog.addons.get(product.id, {})))
    return evaluate(tree, facts)


def _verdict(violations: set, notices: list, bom: list) -> dict[str, Any]:
    return {"valid": not violations, "violations": sorted(violations), "notices": sorted(notices), "bom": bom}


def observe(verdict: dict) -> dict[str, Any]:
    """Reduce an engine verdict (Verdict.to_json()) to the observable verdict evaluate_plain returns."""
    return {
        "valid": verdict["valid"],
        "violations": sorted({(item["rule"], item["code"]) for item in verdict["violations"]}),
        "notices": sorted((item["rule"], item["code"]) for item in verdict["notices"]),
        "bom": [(line["reference"], line["quantity"], line["months"]) for line in verdict["bom"]],
    }
