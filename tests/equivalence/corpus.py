"""The equivalence corpus: 5,000 validate, 500 amend and 500 renew requests over a catalogue, the same for a seed.

Validate requests are a systematic part (every product x version x licence model x term, sold or not, x tier,
former names included; device counts around each tier's included and maximum counts; every set of add-ons
at quantities 1, the maximum and one over it; every set of badges) and the rest from bench/requests.py
(`generate_requests`, valid configurations with zero to two mistakes). Amend and renew requests start from a
subscription (mostly valid, some perpetual) and change the tier up and down, along and off the declared
upgrade paths, the devices up and down, add and remove add-ons, dated before the start, in various months
of the term, in its last month, at and after its end.

Each request is (id, kind, data): kind `validate`, `amend` or `renew`; data a JSON-like dict, as the CLI and
the web API accept it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import itertools
import random
from typing import Any

from bench.requests import generate_requests
from engine import PERPETUAL, SUBSCRIPTION, Catalog, Product

SEED = 14  # issue #14
VALIDATE_COUNT = 5000
AMEND_COUNT = 500
RENEW_COUNT = 500
UNSOLD_TERMS = (1, 6, 24, 48, 120)  # none of them sold by the shipped products; 1 and 120 are the schema's bounds
UNKNOWN_TIER = "platinum"  # a request error: no product has it

Entry = tuple[str, str, dict]


def corpus(catalog: Catalog, seed: int = SEED) -> list[Entry]:
    """Return every request of the corpus, in order: validate (v0000..), amend (a000..), renew (r000..)."""
    validate = systematic_requests(catalog) + [("", "validate", data) for data in
                                               generate_requests(catalog, VALIDATE_COUNT, seed)]
    entries = [(f"v{index:04d}", "validate", data) for index, (_, _, data) in enumerate(validate[:VALIDATE_COUNT])]
    changes = _Changes(catalog, random.Random(seed))
    entries += [(f"a{index:03d}", "amend", changes.request("change")) for index in range(AMEND_COUNT)]
    entries += [(f"r{index:03d}", "renew", changes.request("renewal")) for index in range(RENEW_COUNT)]
    return entries


# ------------------------------------------------------------------------------------------- validate

def _entitled(catalog: Catalog, product: Product) -> list[str]:
    """Return badges that unlock every version of the product, or failing that the one with the lowest floor."""
    unlocking = catalog.badges_unlocking(product.id)
    free = sorted(badge.id for badge, unlock in unlocking if unlock.min_version is None)
    return free[:1] or [unlocking[0][0].id]


def _configuration(product: Product, license: str, term: int | None, tier: str, version: str | None = None,
                   devices: int | None = None, addons: list | None = None) -> dict:
    configuration: dict[str, Any] = {"product": product.id, "license": license, "tier": tier}
    if version is not None:
        configuration["version"] = version
    if term is not None:
        configuration["term_months"] = term
    if devices is not None:
        configuration["devices"] = devices
    if addons is not None:
        configuration["addons"] = addons
    return configuration


def _sold(product: Product) -> tuple[str, int | None]:
    """Return a licence model and term the product sells (a subscription when it has one)."""
    return (SUBSCRIPTION, product.terms[-1]) if product.terms else (PERPETUAL, None)


def systematic_requests(catalog: Catalog) -> list[Entry]:
    """Return the enumerated corners of the catalogue, as validate requests."""
    out: list[Entry] = []

    def add(badges: list[str], configuration: dict) -> None:
        out.append(("", "validate", {"partner": {"badges": badges}, "configuration": configuration}))

    for product_id in sorted(catalog.products):
        product = catalog.products[product_id]
        badges = _entitled(catalog, product)
        tier_names = [tier.id for tier in product.tiers] + [name for tier in product.tiers for name in
                                                             tier.former_names]
        license_model, sold_term = _sold(product)
        # version x licence model x term (sold, unsold, none) x tier (live, former)
        for version in (None, *product.versions):
            for license in (SUBSCRIPTION, PERPETUAL):
                for term in (None, *product.terms, *UNSOLD_TERMS):
                    for tier in tier_names:
                        add(badges, _configuration(product, license, term, tier, version))
        add(badges, _configuration(product, license_model, sold_term, UNKNOWN_TIER))
        # device counts around each tier's included and maximum counts
        for tier in product.tiers:
            for devices in sorted({0, 1, tier.devices_included - 1, tier.devices_included, tier.devices_included + 1,
                                   tier.devices_max - 1, tier.devices_max, tier.devices_max + 1,
                                   2 * tier.devices_max} - {-1}):
                for license in product.licenses:
                    term = product.terms[0] if license == SUBSCRIPTION else None
                    add(badges, _configuration(product, license, term, tier.id, devices=devices))
        # every set of add-ons, on every tier, at quantity 1, each at its maximum, and one over the maximum
        addons = catalog.addons.get(product.id, {})
        for size in range(len(addons) + 1):
            for chosen in itertools.combinations(sorted(addons), size):
                for tier in product.tiers:
                    for how in ("one", "max", "over"):
                        if how != "one" and not chosen:
                            continue
                        items = []
                        for addon_id in chosen:
                            limit = addons[addon_id].max_quantity
                            quantity = 1 if how == "one" or limit is None else limit + (how == "over")
                            items.append({"id": addon_id, "quantity": quantity})
                        add(badges, _configuration(product, license_model, sold_term, tier.id,
                                                   devices=tier.devices_included + 1, addons=items))
        # every set of badges, at every version (below and above each badge's minimum version)
        all_badges = sorted(catalog.badges)
        for size in range(len(all_badges) + 1):
            for held in itertools.combinations(all_badges, size):
                for version in product.versions:
                    add(list(held), _configuration(product, license_model, sold_term, product.tiers[0].id, version))
    return out


# ----------------------------------------------------------------------------------- amend and renew

class _Changes:
    """Draws amend and renew requests from one random stream."""

    def __init__(self, catalog: Catalog, rnd: random.Random) -> None:
        self.catalog = catalog
        self.random = rnd
        self.products = sorted(catalog.products)

    def devices(self, tier, at_least: int = 0) -> int:
        """Return a device count around one of the tier's boundaries; over its maximum one time in ten."""
        rnd = self.random
        anchor = rnd.choice((0, tier.devices_included, tier.devices_max))
        count = max(0, anchor + rnd.choice((-1, 0, 0, 1, 7, -7)))
        if rnd.random() < 0.1:
            return max(count, tier.devices_max + rnd.choice((1, 1, 10)))
        return min(max(count, at_least), tier.devices_max)

    def addons(self, product: Product, rank: int, held: set[str] = frozenset()) -> list[dict]:
        """Return a random set of the product's add-ons; mostly ones whose prerequisites hold."""
        rnd = self.random
        available = self.catalog.addons.get(product.id, {})
        ranks = {tier.id: tier.rank for tier in product.tiers}
        wanted = [addon_id for addon_id in sorted(available) if rnd.random() < 0.4]
        if rnd.random() < 0.8:  # keep the prerequisites; otherwise violate them
            wanted = [addon_id for addon_id in wanted
                      if (available[addon_id].requires_tier is None or ranks[available[addon_id].requires_tier] <= rank)
                      and all(other in wanted or other in held for other in available[addon_id].requires_addons)
                      and not any(other in wanted or other in held for other in available[addon_id].excludes)]
        items = []
        for addon_id in wanted:
            limit = available[addon_id].max_quantity or 20
            quantity = rnd.choice((1, 1, 1, limit, limit)) if rnd.random() < 0.93 else limit + 1
            items.append({"id": addon_id} if quantity == 1 and rnd.random() < 0.5 else
                         {"id": addon_id, "quantity": quantity})
        return items

    def date(self, start: dt.date, term: int) -> dt.date:
        """Return a date before the start, in some month of the term, in its last month, at or after its end."""
        rnd = self.random
        roll = rnd.random()
        if roll < 0.05:
            return start - dt.timedelta(days=rnd.choice((1, 40)))
        if roll < 0.15:
            return _add_months(start, term) - dt.timedelta(days=rnd.choice((1, 2, 15)))  # the last month
        if roll < 0.25:
            return _add_months(start, term) + dt.timedelta(days=rnd.choice((0, 1, 31, 200, 400, 1200)))
        day = _add_months(start, rnd.randint(0, max(0, term - 1)))
        return day + dt.timedelta(days=rnd.choice((0, 0, 1, 14, 27)))

    def request(self, kind: str) -> dict:
        """Return one amend (kind `change`) or renew (kind `renewal`) request."""
        rnd = self.random
        catalog = self.catalog
        product = catalog.products[rnd.choice(self.products)]
        unlocking = catalog.badges_unlocking(product.id)
        badge, unlock = rnd.choice(unlocking)
        badges = {badge.id} if rnd.random() < 0.93 else set()
        versions = [version for version in product.versions
                    if unlock.min_version is None or _key(version) >= _key(unlock.min_version)]
        if product.terms and (not product.perpetual or rnd.random() < 0.92):
            license, term = SUBSCRIPTION, rnd.choice(product.terms)
        else:
            license, term = PERPETUAL, None
        tier = rnd.choice(product.tiers)
        year, month = rnd.choice((2024, 2025, 2026)), rnd.randint(1, 12)
        # 29..31 are clamped to the month's last day: month ends and the leap day are starts worth having
        start = dt.date(year, month, min(rnd.choice((1, 1, 15, 28, 29, 30, 31)), calendar.monthrange(year, month)[1]))
        held = self.addons(product, tier.rank)
        subscription: dict[str, Any] = {"product": product.id, "license": license, "start": start.isoformat(),
                                        "tier": tier.id, "devices": self.devices(tier), "addons": held}
        if rnd.random() < 0.7:
            subscription["version"] = rnd.choice(versions)
        if term is not None:
            subscription["term_months"] = term
        change: dict[str, Any] = {"date": self.date(start, term or 12).isoformat()}
        ranks = {item.id: item.rank for item in product.tiers}
        along = [item for item in product.tiers if item.id in product.upgrade_targets(tier.id)]
        moves = {"along": along, "off": [item for item in product.tiers if item.rank > tier.rank and item not in along],
                 "down": [item for item in product.tiers if item.rank < tier.rank], "same": [tier],
                 "former": [item for item in product.tiers if item.former_names], "none": [tier]}
        weights = {"along": 35, "off": 8, "down": 12, "same": 8, "former": 5, "none": 32}
        move = rnd.choices(list(weights), weights=list(weights.values()))[0]
        new_tier = rnd.choice(moves[move]) if moves[move] else tier
        if move == "former" and moves[move]:
            change["tier"] = rnd.choice(new_tier.former_names)
        elif move != "none" and moves[move]:
            change["tier"] = new_tier.id
        if rnd.random() < 0.6:  # mostly more devices mid-term, any number at renewal
            more = kind == "change" and rnd.random() < 0.8
            change["devices"] = self.devices(new_tier, subscription["devices"] if more else 0)
        if rnd.random() < 0.5:
            added = self.addons(product, ranks[new_tier.id], {item["id"] for item in held})
            if added:
                change["addons"] = added
        if held and rnd.random() < (0.1 if kind == "change" else 0.35):
            removals = []
            for item in rnd.sample(held, k=rnd.randint(1, len(held))):
                quantity = item.get("quantity", 1)
                removal = {"id": item["id"]}
                if rnd.random() < 0.5:  # now and then more than held: a request error
                    removal["quantity"] = rnd.randint(1, quantity + (rnd.random() < 0.2))
                removals.append(removal)
            change["remove_addons"] = removals
        if kind == "renewal" and rnd.random() < 0.4:
            change["term_months"] = rnd.choice((*product.terms, *UNSOLD_TERMS[:3]) or UNSOLD_TERMS)
        return {"partner": {"badges": sorted(badges)}, "subscription": subscription, kind: change}


def _add_months(day: dt.date, months: int) -> dt.date:
    """Return the same day `months` later, clamped to the month's end (the corpus's own arithmetic)."""
    year, month = divmod(day.year * 12 + day.month - 1 + months, 12)
    return dt.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))
