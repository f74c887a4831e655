"""Guided configuration: for each open choice, the values that can still lead to a valid configuration.

A value is offered when at least one completion of the partial configuration with that value is valid
under the rules (the engine decides, through evaluate). An excluded value comes with the refusals of its
closest completion (the one with the fewest violations), so the partner sees why, not only that.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Iterator

from engine.inference.compile import CompiledCatalog
from engine.inference.evaluate import Verdict, evaluate
from engine.catalogue.model import PERPETUAL, SUBSCRIPTION, Catalog, Product
from engine.inference.request import AddonChoice, Configuration, Request

# Refusals no other licence, term, tier or add-on can fix: stop trying completions of that product.
PRODUCT_LEVEL = {"not-entitled", "version-too-low"}


class Explorer:
    """Evaluate completions of one partial request, remembering verdicts already computed."""

    def __init__(self, compiled: CompiledCatalog, request: Request):
        self.compiled = compiled
        self.catalog: Catalog = compiled.catalog
        self.request = request
        self.verdicts: dict[Configuration, Verdict] = {}

    def verdict(self, configuration: Configuration) -> Verdict:
        """Evaluate a complete configuration once."""
        if configuration not in self.verdicts:
            request = dataclasses.replace(self.request, configuration=configuration)
            self.verdicts[configuration] = evaluate(self.compiled, request)
        return self.verdicts[configuration]

    def completions(self, partial: Configuration) -> Iterator[Configuration]:
        """Yield complete configurations that keep every choice the partial one made."""
        products = [partial.product] if partial.product else list(self.catalog.products)
        for product_id in products:
            product = self.catalog.products[product_id]
            licenses = [partial.license] if partial.license else list(product.licenses) or [SUBSCRIPTION]
            tiers = [partial.tier] if partial.tier else [tier.id for tier in product.tiers]
            for license, tier in itertools.product(licenses, tiers):
                terms = [None] if license == PERPETUAL else \
                    ([partial.term_months] if partial.term_months else list(product.terms) or [12])
                for term in terms:
                    yield dataclasses.replace(
                        partial, product=product_id, license=license, term_months=term, tier=tier,
                        tier_written=partial.tier_written if partial.tier == tier else tier,
                        addons=with_prerequisites(self.catalog, product, partial.addons),
                    )

    def best(self, partial: Configuration) -> tuple[bool, Verdict | None]:
        """Return whether some completion is valid, and the closest verdict (a valid one if any)."""
        closest: Verdict | None = None
        for configuration in self.completions(partial):
            verdict = self.verdict(configuration)
            if verdict.valid:
                return True, verdict
            if closest is None or len(verdict.violations) < len(closest.violations):
                closest = verdict
            if {item["code"] for item in verdict.violations} & PRODUCT_LEVEL:
                if partial.product or not self._product_level_only(verdict):
                    break
        return False, closest

    @staticmethod
    def _product_level_only(verdict: Verdict) -> bool:
        return all(item["code"] in PRODUCT_LEVEL for item in verdict.violations)


def with_prerequisites(catalog: Catalog, product: Product, addons: tuple[AddonChoice, ...]) -> tuple[AddonChoice, ...]:
    """Add the add-ons that the chosen ones require, transitively, so a completion is not refused for them."""
    known = catalog.addons.get(product.id, {})
    chosen = {addon.id: addon for addon in addons if addon.id in known}
    pending = list(chosen)
    while pending:
        addon = known[pending.pop()]
        for other in addon.requires_addons:
            if other not in chosen and other in known:
                chosen[other] = AddonChoice(other, 1)
                pending.append(other)
    return tuple(chosen.values())


def reasons(verdict: Verdict | None) -> list[dict]:
    """Return the refusals that explain an excluded value."""
    if verdict is None:
        return [{"rule": "", "code": "no-completion", "message": "no configuration with this value exists"}]
    return [{"rule": item["rule"], "code": item["code"], "message": item["message"], "hint": item["hint"],
             "where": item["where"]} for item in verdict.violations]


def options(compiled: CompiledCatalog, request: Request) -> dict:
    """List, for every choice of the configuration, the values still possible and why the others are not."""
    explorer = Explorer(compiled, request)
    catalog = compiled.catalog
    partial = request.configuration
    result: dict = {"rules_version": catalog.rules_version}

    def choice(name: str, values: list, change) -> dict:
        entries = []
        for value in values:
            possible, verdict = explorer.best(change(value))
            entry = {"value": value, "allowed": possible}
            if not possible:
                entry["reasons"] = reasons(verdict)
            entries.append(entry)
        return {"chosen": getattr(partial, name), "options": entries}

    # Choosing a product resets what depends on it.
    result["product"] = choice("product", list(catalog.products),
                               lambda value: Configuration(product=value, devices=partial.devices) if value != partial.product
                               else partial)
    product = catalog.products.get(partial.product) if partial.product else None
    if product is None:
        result["possible"] = any(entry["allowed"] for entry in result["product"]["options"])
        return result
    result["license"] = choice("license", list(product.licenses),
                               lambda value: dataclasses.replace(partial, license=value,
                                                                 term_months=None if value == PERPETUAL
                                                                 else partial.term_months))
    if partial.license != PERPETUAL and product.terms:
        result["term_months"] = choice("term_months", list(product.terms),
                                       lambda value: dataclasses.replace(partial, term_months=value,
                                                                         license=partial.license or SUBSCRIPTION))
    result["tier"] = choice("tier", [tier.id for tier in product.tiers],
                            lambda value: dataclasses.replace(partial, tier=value, tier_written=value))
    addons = []
    chosen = {addon.id for addon in partial.addons}
    for addon in catalog.addons.get(product.id, {}).values():
        if addon.id in chosen:
            change = dataclasses.replace(partial)
        else:
            change = dataclasses.replace(partial, addons=partial.addons + (AddonChoice(addon.id, 1),))
        possible, verdict = explorer.best(change)
        entry = {"value": addon.id, "name": addon.name, "allowed": possible, "chosen": addon.id in chosen,
                 "max_quantity": addon.max_quantity, "requires": list(addon.requires_addons)}
        if addon.requires_tier:
            entry["requires_tier"] = addon.requires_tier
        if not possible:
            entry["reasons"] = reasons(verdict)
        addons.append(entry)
    result["addons"] = {"chosen": [{"id": a.id, "quantity": a.quantity} for a in partial.addons], "options": addons}
    tier = product.tier(partial.tier) if partial.tier else None
    result["devices"] = {"chosen": partial.devices,
                         "included": tier.devices_included if tier else None,
                         "max": tier.devices_max if tier else max(t.devices_max for t in product.tiers)}
    possible, verdict = explorer.best(partial)
    result["possible"] = possible
    complete = all(getattr(partial, name) for name in ("product", "license", "tier")) and \
        (partial.license == PERPETUAL or partial.term_months)
    if complete:
        result["verdict"] = explorer.verdict(partial).to_json()
    return result
