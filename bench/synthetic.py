"""Write a synthetic, valid rule set of any size, for benchmarks and scale tests.

`generate_catalog(directory, products=300, tiers=10, addons=20, seed=0)` writes badges.yaml, tiers.yaml and
addons.yaml that `load_catalog` accepts with zero problems. The same arguments always give the same files.

What it holds, per product: versions, a subscription (12 and 36 months; every third product is also sold
perpetually), `tiers` tiers in a chain of upgrades plus a few skips, a former name on some tiers, device
limits growing with the tier, `addons` add-ons mixing a minimum tier, a required add-on, a mutual exclusion and
quantity limits, and a device licence. Exclusions never touch an add-on that requires or is required by
another, so every add-on can be configured. Badges unlock products in groups of ten, plus a few broad badges;
every product is unlocked by at least one badge, some from a minimum version.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import yaml

VERSIONS = ["2022", "2023", "2024", "2025"]


def product_id(index: int) -> str:
    """Name product number index: `prod-007`."""
    return f"prod-{index:03d}"


def tier_id(index: int) -> str:
    """Name tier number index (0 is the base tier): `tier-01`."""
    return f"tier-{index + 1:02d}"


def addon_id(index: int) -> str:
    """Name add-on number index: `addon-01`."""
    return f"addon-{index + 1:02d}"


def _offers(number: int) -> list[str]:
    offers = ["subscription-12", "subscription-36"]
    return offers + ["perpetual"] if number % 3 == 0 else offers


def _references(prefix: str, offers: list[str]) -> dict[str, str]:
    suffix = {"subscription-12": "SUB-1Y", "subscription-36": "SUB-3Y", "perpetual": "PERP"}
    return {offer: f"{prefix}-{suffix[offer]}" for offer in offers}


def _product(number: int, tiers: int, rng: random.Random) -> dict:
    pid = product_id(number)
    sku = pid.upper()
    offers = _offers(number)
    licenses: dict = {"subscription": {"terms": [12, 36]}}
    if "perpetual" in offers:
        licenses["perpetual"] = {}
    items = []
    for rank in range(tiers):
        tier = {"id": tier_id(rank), "name": f"Tier {rank + 1}"}
        if rank and rng.random() < 0.2:
            tier["former_names"] = [f"legacy-{rank + 1:02d}"]
        tier["devices"] = {"included": 10 * (rank + 1), "max": 100 * (rank + 1)}
        tier["references"] = _references(f"{sku}-T{rank + 1:02d}", offers)
        items.append(tier)
    upgrades = [{"from": tier_id(rank), "to": tier_id(rank + 1)} for rank in range(tiers - 1)]
    skips = {(low, high) for low, high in (sorted(rng.sample(range(tiers), 2)) for _ in range(tiers // 3))
             if high > low + 1} if tiers > 2 else set()
    upgrades += [{"from": tier_id(low), "to": tier_id(high)} for low, high in sorted(skips)]
    return {
        "id": pid,
        "name": f"Synthetic product {number}",
        "versions": VERSIONS[: 1 + number % len(VERSIONS)],
        "licenses": licenses,
        "tiers": items,
        "upgrades": upgrades,
    }


def _addons(number: int, tiers: int, count: int, rng: random.Random) -> list[dict]:
    pid = product_id(number)
    offers = _offers(number)
    in_requires: set[int] = set()  # add-ons that require, or are required by, another
    in_exclusion: set[int] = set()  # add-ons in an exclusion pair
    items = []
    for index in range(count):
        addon: dict = {"id": addon_id(index), "product": pid, "name": f"Add-on {index + 1} of {pid}"}
        requires: dict = {}
        if tiers > 1 and rng.random() < 0.3:
            requires["tier"] = tier_id(rng.randrange(1, tiers))
        role = rng.choice(["plain", "plain", "requires", "excludes"])
        if role == "requires":
            candidates = [other for other in range(index) if other not in in_exclusion]
            if candidates:
                other = rng.choice(candidates)
                requires["addons"] = [addon_id(other)]
                in_requires.update((index, other))
        elif role == "excludes":
            candidates = [other for other in range(index) if other not in in_requires | in_exclusion]
            if candidates:
                other = rng.choice(candidates)
                addon["excludes"] = [addon_id(other)]
                in_exclusion.update((index, other))
        if requires:
            addon["requires"] = requires
        limit = rng.choice([1, 1, 5, 10, None])
        if limit:
            addon["quantity"] = {"max": limit}
        addon["references"] = _references(f"{pid.upper()}-A{index + 1:02d}", offers)
        items.append(addon)
    return items


def _badges(products: int) -> list[dict]:
    badges = []
    for start in range(0, products, 10):
        unlocks = []
        for number in range(start, min(start + 10, products)):
            unlock: dict = {"product": product_id(number)}
            if number % 4 == 1:
                unlock["min_version"] = VERSIONS[0]
            unlocks.append(unlock)
        badges.append({"id": f"group-{start // 10:03d}", "name": f"Products {start} to {start + 9}",
                       "unlocks": unlocks})
    for start in range(0, products, 50):  # broad badges, overlapping the groups
        badges.append({"id": f"broad-{start // 50:03d}", "name": f"Products {start} to {start + 49}",
                       "unlocks": [{"product": product_id(number)} for number in range(start, min(start + 50, products))]})
    return badges


# Conditions that hold for every generated request (a date after 2020, any licence model), so that verdicts
# stay those of the plain-Python floor while the engine evaluates the condition on every rule it guards.
CONDITIONS = (
    {"date": {"after": "2020-01-01"}},
    {"any": [{"configuration.license": "subscription"}, {"configuration.term_months": {"at_most": 0}},
             {"date": {"before": "2100-01-01"}}]},
    {"not": {"date": {"before": "2021-01-01"}}},
)


def add_conditions(files: dict, rng: random.Random) -> None:
    """Put a `when:` on every unlock, tier, upgrade path and add-on: every rule they compile to carries it."""
    # Copies: YAML would write one shared mapping as an anchor and aliases, which rule files refuse.
    for badge in files["badges.yaml"]["badges"]:
        for unlock in badge["unlocks"]:
            unlock["when"] = copy.deepcopy(rng.choice(CONDITIONS))
    for product in files["tiers.yaml"]["products"]:
        for tier in product["tiers"]:
            tier["when"] = copy.deepcopy(rng.choice(CONDITIONS))
        for upgrade in product["upgrades"]:
            upgrade["when"] = copy.deepcopy(rng.choice(CONDITIONS))
    for addon in files["addons.yaml"]["addons"]:
        addon["when"] = copy.deepcopy(rng.choice(CONDITIONS))


def generate_catalog(directory: Path, products: int = 300, tiers: int = 10, addons: int = 20, seed: int = 0,
                     conditions: bool = False) -> None:
    """Write a valid synthetic rule set (badges.yaml, tiers.yaml, addons.yaml) into directory."""
    if products < 1 or tiers < 1 or addons < 0:
        raise ValueError("need at least one product and one tier, and no negative add-on count")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    catalogue = [_product(number, tiers, rng) for number in range(products)]
    extras = [addon for number in range(products) for addon in _addons(number, tiers, addons, rng)]
    devices = [{"product": product_id(number), "name": f"Device licence of {product_id(number)}",
                "references": _references(f"{product_id(number).upper()}-DEV", _offers(number))}
               for number in range(products)]
    files = {
        "badges.yaml": {"badges": _badges(products)},
        "tiers.yaml": {"products": catalogue},
        "addons.yaml": {"addons": extras, "devices": devices},
    }
    if conditions:
        add_conditions(files, rng)
    for name, data in files.items():
        text = f"# Synthetic rule set: {products} products x {tiers} tiers x {addons} add-ons, seed {seed}.\n"
        text += yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
        (directory / name).write_text(text, encoding="utf-8")
