"""Generate mixed, well-formed requests for a catalogue: valid ones and ones the rules refuse, by seed.

Every request is a JSON-like dict that `engine.inference.request.request_from_data` accepts (known ids, known
versions, product, licence and tier always present). Each starts as a valid configuration (entitling
badges, a sold licence model and term, a tier, devices within its limit, add-ons whose prerequisites,
exclusions and quantity limits hold) and then gets zero, one or two mistakes from this list:

    wrong-badge, version-too-low, license-not-sold, term-not-sold, term-missing, perpetual-with-term,
    former-tier-name, too-many-devices, requires-tier, requires-addon, excluded, over-quantity,
    no-version

so that every rule kind is exercised, alone and in combination.
"""

from __future__ import annotations

import random
from typing import Any

from engine.catalogue.model import PERPETUAL, SUBSCRIPTION, Catalog, Product, version_key

MISTAKES = ("wrong-badge", "version-too-low", "license-not-sold", "term-not-sold", "term-missing",
            "perpetual-with-term", "former-tier-name", "too-many-devices", "requires-tier", "requires-addon",
            "excluded", "over-quantity", "no-version")


class _Generator:
    def __init__(self, catalog: Catalog, seed: int) -> None:
        self.catalog = catalog
        self.random = random.Random(seed)
        self.products = sorted(catalog.products)
        self.badges = sorted(catalog.badges)
        # product -> [(badge id, minimum version or None)]
        self.unlocks: dict[str, list[tuple[str, str | None]]] = {product: [] for product in self.products}
        for badge_id in self.badges:
            for unlock in catalog.badges[badge_id].unlocks:
                self.unlocks.setdefault(unlock.product, []).append((badge_id, unlock.min_version))

    # -- a valid starting point -------------------------------------------------------------------------
    def base(self, product: Product) -> dict[str, Any]:
        rnd = self.random
        unlocks = self.unlocks[product.id]
        badge_id, minimum = rnd.choice(unlocks)
        versions = [v for v in product.versions if minimum is None or version_key(v) >= version_key(minimum)]
        badges = {badge_id}
        if rnd.random() < 0.3:  # an unrelated badge or two: the union of badges
            badges.update(rnd.sample(self.badges, k=min(2, len(self.badges))))
        licenses = list(product.licenses)
        license = rnd.choice(licenses)
        configuration: dict[str, Any] = {"product": product.id, "version": rnd.choice(versions), "license": license}
        if license == SUBSCRIPTION:
            configuration["term_months"] = rnd.choice(product.terms)
        tier = rnd.choice(product.tiers)
        configuration["tier"] = tier.id
        roll = rnd.random()
        if roll < 0.3:
            devices = rnd.randint(0, tier.devices_included)
        elif roll < 0.9:
            devices = rnd.randint(tier.devices_included, tier.devices_max)
        else:
            devices = tier.devices_max
        if devices or rnd.random() < 0.5:
            configuration["devices"] = devices
        addons = self.valid_addons(product, tier.rank)
        if addons or rnd.random() < 0.5:
            configuration["addons"] = addons
        partner: dict[str, Any] = {"badges": sorted(badges)}
        if rnd.random() < 0.5:
            partner["country"] = rnd.choice(("US", "FR", "DE", "IN", "BR"))
        return {"partner": partner, "configuration": configuration}

    def valid_addons(self, product: Product, rank: int) -> list[dict]:
        """Pick add-ons that satisfy their tier and add-on prerequisites, exclusions and limits."""
        rnd = self.random
        available = self.catalog.addons.get(product.id, {})
        ranks = {tier.id: tier.rank for tier in product.tiers}
        wanted = [addon_id for addon_id in available if rnd.random() < 0.35]
        chosen: dict[str, int] = {}

        def fits(addon_id: str, taken: set[str]) -> bool:
            addon = available[addon_id]
            if addon.requires_tier is not None and ranks[addon.requires_tier] > rank:
                return False
            return not any(other in taken for other in addon.excludes) and not any(
                addon_id in available[other].excludes for other in taken)

        for addon_id in wanted:
            # the add-on and everything it needs, transitively
            needed: list[str] = []
            stack = [addon_id]
            while stack:
                current = stack.pop()
                if current in needed or current in chosen:
                    continue
                needed.append(current)
                stack.extend(available[current].requires_addons)
            taken = set(chosen)
            ok = True
            for current in needed:
                if not fits(current, taken | (set(needed) - {current})):
                    ok = False
                    break
            if ok:
                for current in needed:
                    limit = available[current].max_quantity
                    chosen[current] = rnd.randint(1, min(limit or 20, 20))
        items = []
        for addon_id in sorted(chosen, key=lambda _: rnd.random()):
            quantity = chosen[addon_id]
            items.append({"id": addon_id} if quantity == 1 and rnd.random() < 0.5
                         else {"id": addon_id, "quantity": quantity})
        return items

    # -- mistakes ---------------------------------------------------------------------------------------
    def mistake(self, name: str, request: dict, product: Product) -> bool:
        """Apply one mistake; return False when the catalogue gives no way to make it for this product."""
        rnd = self.random
        partner, configuration = request["partner"], request["configuration"]
        addons = self.catalog.addons.get(product.id, {})
        if name == "wrong-badge":
            unlocking = {badge_id for badge_id, _ in self.unlocks[product.id]}
            others = [badge_id for badge_id in self.badges if badge_id not in unlocking]
            partner["badges"] = sorted(rnd.sample(others, k=min(len(others), rnd.randint(0, 2))))
            return True
        if name == "version-too-low":
            options = []
            for badge_id, minimum in self.unlocks[product.id]:
                if minimum is None:
                    continue
                lower = [v for v in product.versions if version_key(v) < version_key(minimum)]
                if lower:
                    options.append((badge_id, lower))
            if not options:
                return False
            badge_id, lower = rnd.choice(options)
            # hold only badges that unlock this product from a higher version (or nothing for it)
            floor = max(version_key(v) for v in lower)
            keep = {badge_id}
            for other, minimum in self.unlocks[product.id]:
                if minimum is not None and version_key(minimum) > floor and rnd.random() < 0.5:
                    keep.add(other)
            partner["badges"] = sorted(keep)
            configuration["version"] = rnd.choice(lower)
            return True
        if name == "license-not-sold":
            if product.terms and product.perpetual:
                return False
            if product.terms:
                configuration["license"] = PERPETUAL
                if rnd.random() < 0.5:
                    configuration.pop("term_months", None)
            else:
                configuration["license"] = SUBSCRIPTION
                if rnd.random() < 0.7:
                    configuration["term_months"] = rnd.choice((12, 24, 36))
            return True
        if name in ("term-not-sold", "term-missing"):
            if not product.terms:
                return False
            configuration["license"] = SUBSCRIPTION
            if name == "term-missing":
                configuration.pop("term_months", None)
            else:
                unsold = [term for term in (1, 6, 12, 18, 24, 36, 48, 60, 120) if term not in product.terms]
                configuration["term_months"] = rnd.choice(unsold)
            return True
        if name == "perpetual-with-term":
            if not product.perpetual:
                return False
            configuration["license"] = PERPETUAL
            configuration["term_months"] = rnd.choice((12, 36, 7))
            return True
        if name == "former-tier-name":
            renamed = [(tier, former) for tier in product.tiers for former in tier.former_names]
            if not renamed:
                return False
            tier, former = rnd.choice(renamed)
            configuration["tier"] = former
            return True
        if name == "too-many-devices":
            tier = self.tier_of(product, configuration["tier"])
            configuration["devices"] = tier.devices_max + rnd.choice((1, 1, 2, 50, tier.devices_max + 1))
            return True
        if name == "requires-tier":
            rank = self.tier_of(product, configuration["tier"]).rank
            ranks = {tier.id: tier.rank for tier in product.tiers}
            options = [addon_id for addon_id, addon in addons.items()
                       if addon.requires_tier is not None and ranks[addon.requires_tier] > rank]
            if not options:
                return False
            self.add(configuration, rnd.choice(options))
            return True
        if name == "requires-addon":
            options = [addon_id for addon_id, addon in addons.items() if addon.requires_addons]
            if not options:
                return False
            addon_id = rnd.choice(options)
            self.add(configuration, addon_id)
            missing = rnd.choice(addons[addon_id].requires_addons)
            configuration["addons"] = [item for item in configuration["addons"] if item["id"] != missing]
            return True
        if name == "excluded":
            options = [(addon_id, other) for addon_id, addon in addons.items() for other in addon.excludes
                       if other in addons]
            if not options:
                return False
            addon_id, other = rnd.choice(options)
            self.add(configuration, addon_id)
            self.add(configuration, other)
            return True
        if name == "over-quantity":
            options = [addon_id for addon_id, addon in addons.items() if addon.max_quantity is not None]
            if not options:
                return False
            addon_id = rnd.choice(options)
            self.add(configuration, addon_id)
            for item in configuration["addons"]:
                if item["id"] == addon_id:
                    item["quantity"] = addons[addon_id].max_quantity + rnd.choice((1, 1, 5))
            return True
        if name == "no-version":
            configuration.pop("version", None)
            return True
        raise ValueError(name)

    def tier_of(self, product: Product, name: str):
        return product.tier(name) or product.tier_by_former_name(name)

    def add(self, configuration: dict, addon_id: str) -> None:
        items = configuration.setdefault("addons", [])
        if not any(item["id"] == addon_id for item in items):
            items.insert(self.random.randint(0, len(items)), {"id": addon_id})

    def request(self) -> dict:
        rnd = self.random
        product = self.catalog.products[rnd.choice(self.products)]
        request = self.base(product)
        count = rnd.choices((0, 1, 2), weights=(3, 5, 2))[0]
        for name in rnd.sample(MISTAKES, k=count):
            self.mistake(name, request, product)
        return request


def generate_requests(catalog: Catalog, n: int, seed: int = 0) -> list[dict]:
    """Return n well-formed mixed requests (JSON-like dicts) for catalog, the same for the same seed."""
    generator = _Generator(catalog, seed)
    return [generator.request() for _ in range(n)]
