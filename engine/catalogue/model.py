"""Typed, immutable catalogue objects, each with its stable rule id and source location."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from engine.catalogue import conditions
from engine.catalogue.conditions import Node
from engine.catalogue.source import Source, display_path
from engine.problem import CompanionError, Location, Problem

PERPETUAL = "perpetual"
# The rule engine compares versions as one number of VERSION_PARTS parts in base VERSION_BASE:
# 100000**3 = 1e15 stays exact in the engine's double-precision numbers.
VERSION_PARTS, VERSION_BASE = 3, 100_000
SUBSCRIPTION = "subscription"
# The days a subscription may start, change or renew on: far enough out that a term plus renewals stays a date.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)


def offer_key(license: str, term: int | None) -> str:
    """Name what is sold: `perpetual` or `subscription-<months>`."""
    return PERPETUAL if license == PERPETUAL else f"{SUBSCRIPTION}-{term}"


def version_key(version: str) -> tuple[int, ...]:
    """Order versions part by part as numbers: 7.2 < 7.10."""
    return tuple(int(part) for part in version.split("."))


@functools.lru_cache(maxsize=4096)  # a catalogue has few versions; each request asks for one of them
def version_number(version: str) -> int:
    """Encode a version as one integer that orders like the version, as the rule engine compares it.

    check.py refuses a version that does not fit; one that slips through is a ValueError, never a wrong order.
    """
    parts = list(version_key(version))
    if len(parts) > VERSION_PARTS or any(part >= VERSION_BASE for part in parts):
        raise ValueError(f"version {version!r} has more than {VERSION_PARTS} parts or a part over {VERSION_BASE - 1}")
    parts += [0] * (VERSION_PARTS - len(parts))
    number = 0
    for part in parts:
        number = number * VERSION_BASE + part
    return number


def name_key(name: str) -> str:
    """Return a tier name as it is compared: case folded, runs of spaces, dashes and underscores as one dash."""
    return re.sub(r"[\s_-]+", "-", name.casefold()).strip("-")


def whole(number):
    """Return a whole number as an int: JSON Schema counts 36.0 as the integer 36, and so do we, as 36."""
    return int(number) if isinstance(number, float) else number


@dataclass(frozen=True)
class Sellable:
    """A commercial reference (SKU) and the catalogue item it sells."""

    reference: str
    description: str
    kind: str  # tier | addon | devices | amendment, ...
    product: str
    offer: str
    rule: str
    where: Location


@dataclass(frozen=True)
class Tier:
    """A licensing plan tier of one product; rank 0 is the base tier."""

    id: str
    product: str
    name: str
    rank: int
    former_names: tuple[str, ...]
    devices_included: int
    devices_max: int
    references: Mapping[str, str]
    rule: str
    where: Location
    spots: Mapping[str, Location]
    description: str = ""
    min_version: str | None = None  # requires.min_version: the tier is sold from this product version
    when: Node | None = None  # its limit and requirements apply only when this holds


@dataclass(frozen=True)
class Upgrade:
    """A declared upgrade path between two tiers of one product."""

    product: str
    source: str
    target: str
    rule: str
    where: Location
    where_source: Location
    where_target: Location
    when: Node | None = None  # the path is open only when this holds


@dataclass(frozen=True)
class Product:
    """A product with its versions, licence models, tiers (lowest first) and upgrade paths."""

    id: str
    name: str
    versions: tuple[str, ...]
    terms: tuple[int, ...]  # subscription terms in months; empty when no subscription is sold
    perpetual: bool
    tiers: tuple[Tier, ...]
    upgrades: tuple[Upgrade, ...]
    rule: str
    where: Location
    spots: Mapping[str, Location]
    description: str = ""
    min_version: str | None = None  # requires.min_version: configurable from this version only
    offer_when: Mapping[str, Node] = field(default_factory=dict)  # licence model -> sold only when this holds

    @property
    def licenses(self) -> tuple[str, ...]:
        """Return the licence models sold, subscription first."""
        return ((SUBSCRIPTION,) if self.terms else ()) + ((PERPETUAL,) if self.perpetual else ())

    @property
    def offers(self) -> tuple[str, ...]:
        """Return every offer key sold (`subscription-12`, ..., `perpetual`)."""
        return tuple(offer_key(SUBSCRIPTION, term) for term in self.terms) + ((PERPETUAL,) if self.perpetual else ())

    def tier(self, tier_id: str) -> Tier | None:
        """Return the tier with this id, or None."""
        return next((tier for tier in self.tiers if tier.id == tier_id), None)

    def tier_by_former_name(self, name: str) -> Tier | None:
        """Return the tier that used to be called name (in any case; spaces, dashes, underscores alike), or None."""
        key = name_key(name)
        return next((tier for tier in self.tiers if key in map(name_key, tier.former_names)), None)

    @property
    def latest_version(self) -> str:
        """Return the newest version."""
        return max(self.versions, key=version_key)

    def upgrade_targets(self, tier_id: str) -> tuple[str, ...]:
        """Return the tiers reachable from tier_id by one declared upgrade."""
        return tuple(upgrade.target for upgrade in self.upgrades if upgrade.source == tier_id)


@dataclass(frozen=True)
class Unlock:
    """A product a badge unlocks, from an optional minimum version."""

    product: str
    min_version: str | None
    where: Location
    where_version: Location | None
    when: Node | None = None  # the badge unlocks the product only when this holds


@dataclass(frozen=True)
class Badge:
    """A partner badge and the products it unlocks."""

    id: str
    name: str
    unlocks: tuple[Unlock, ...]
    rule: str
    where: Location
    description: str = ""


@dataclass(frozen=True)
class Addon:
    """An add-on module of one product with its prerequisites, exclusions and quantity limit."""

    id: str
    product: str
    name: str
    requires_tier: str | None
    requires_addons: tuple[str, ...]
    excludes: tuple[str, ...]
    max_quantity: int | None
    references: Mapping[str, str]
    rule: str
    where: Location
    spots: Mapping[str, Location]
    description: str = ""
    min_version: str | None = None  # requires.min_version: sold from this product version
    when: Node | None = None  # its requirements, exclusions and limit apply only when this holds


@dataclass(frozen=True)
class DeviceLicense:
    """The device licence of one product: one unit per device beyond what the tier includes."""

    product: str
    name: str
    references: Mapping[str, str]
    rule: str
    where: Location


@dataclass(frozen=True)
class Catalog:
    """The whole checked catalogue: every rule file read into typed objects."""

    directory: Path
    products: Mapping[str, Product]
    badges: Mapping[str, Badge]
    addons: Mapping[str, Mapping[str, Addon]]  # product -> add-on id -> add-on
    devices: Mapping[str, DeviceLicense]  # product -> device licence
    references: Mapping[str, Sellable]
    sources: Mapping[str, Source]
    rules_version: str
    extras: Mapping[str, object] = field(default_factory=dict)  # further rule files' models, by file name

    def rules(self) -> dict[str, Location]:
        """Return every rule id in the catalogue with where it is written."""
        found: dict[str, Location] = {}
        for badge in self.badges.values():
            found[badge.rule] = badge.where
        for product in self.products.values():
            found[product.rule] = product.where
            for tier in product.tiers:
                found[tier.rule] = tier.where
            found[f"license.{product.id}"] = product.spots.get("licenses", product.where)
            for upgrade in product.upgrades:
                found[upgrade.rule] = upgrade.where
        for addons in self.addons.values():
            for addon in addons.values():
                found[addon.rule] = addon.where
        for devices in self.devices.values():
            found[devices.rule] = devices.where
        return found

    @functools.cached_property
    def tiers_by_product(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Return (product id, its tier ids) of every product, to say where a tier named elsewhere belongs."""
        return tuple((product.id, tuple(tier.id for tier in product.tiers)) for product in self.products.values())

    def badges_unlocking(self, product_id: str) -> list[tuple[Badge, Unlock]]:
        """Return the badges that unlock a product, with their unlock entry."""
        return [(badge, unlock) for badge in self.badges.values() for unlock in badge.unlocks
                if unlock.product == product_id]


def frozen(mapping: dict) -> Mapping:
    """Return a read-only view of a dict."""
    return MappingProxyType(dict(mapping))


def build_badges(source: Source) -> dict[str, Badge]:
    """Build badges from a schema-valid badges.yaml; the first of duplicate ids wins (check reports it)."""
    badges: dict[str, Badge] = {}
    for index, item in enumerate(source.data["badges"]):
        path = ("badges", index)
        unlocks = tuple(
            Unlock(
                product=unlock["product"],
                min_version=unlock.get("min_version"),
                where=source.where(path + ("unlocks", position, "product")),
                where_version=source.where(path + ("unlocks", position, "min_version"))
                if "min_version" in unlock else None,
                when=when_of(source, path + ("unlocks", position), unlock),
            )
            for position, unlock in enumerate(item["unlocks"])
        )
        badge = Badge(item["id"], item["name"], unlocks, f"badge.{item['id']}", source.where(path + ("id",)),
                      item.get("description", ""))
        badges.setdefault(badge.id, badge)
    return badges


def build_products(source: Source) -> dict[str, Product]:
    """Build products and their tiers from a schema-valid tiers.yaml."""
    products: dict[str, Product] = {}
    for index, item in enumerate(source.data["products"]):
        path = ("products", index)
        product_id = item["id"]
        tiers = tuple(
            Tier(
                id=tier["id"],
                product=product_id,
                name=tier["name"],
                rank=rank,
                former_names=tuple(tier.get("former_names", ())),
                devices_included=int(tier["devices"]["included"]),  # int(): the schema lets 50.0 pass as 50
                devices_max=int(tier["devices"]["max"]),
                references=frozen(tier["references"]),
                rule=f"tier.{product_id}.{tier['id']}",
                where=source.where(path + ("tiers", rank, "id")),
                spots=Spots(source, path + ("tiers", rank)),
                description=tier.get("description", ""),
                min_version=tier.get("requires", {}).get("min_version"),
                when=when_of(source, path + ("tiers", rank), tier),
            )
            for rank, tier in enumerate(item["tiers"])
        )
        upgrades = tuple(
            Upgrade(
                product=product_id,
                source=upgrade["from"],
                target=upgrade["to"],
                rule=f"upgrade.{product_id}.{upgrade['from']}.{upgrade['to']}",
                where=source.where(path + ("upgrades", position)),
                where_source=source.where(path + ("upgrades", position, "from")),
                where_target=source.where(path + ("upgrades", position, "to")),
                when=when_of(source, path + ("upgrades", position), upgrade),
            )
            for position, upgrade in enumerate(item.get("upgrades", ()))
        )
        licenses = item["licenses"]
        product = Product(
            id=product_id,
            name=item["name"],
            versions=tuple(item["versions"]),
            terms=tuple(int(term) for term in licenses.get("subscription", {}).get("terms", ())),
            perpetual="perpetual" in licenses,
            tiers=tiers,
            upgrades=upgrades,
            rule=f"product.{product_id}",
            where=source.where(path + ("id",)),
            spots=Spots(source, path),
            description=item.get("description", ""),
            min_version=item.get("requires", {}).get("min_version"),
            offer_when=frozen({model: conditions.parse(source, path + ("licenses", model, "when"))
                               for model, offer in licenses.items() if "when" in (offer or {})}),
        )
        products.setdefault(product_id, product)
    return products


def build_addons(source: Source) -> tuple[dict[str, dict[str, Addon]], dict[str, DeviceLicense]]:
    """Build add-ons (by product) and device licences from a schema-valid addons.yaml."""
    addons: dict[str, dict[str, Addon]] = {}
    for index, item in enumerate(source.data["addons"]):
        path = ("addons", index)
        requires = item.get("requires", {})
        addon = Addon(
            id=item["id"],
            product=item["product"],
            name=item["name"],
            requires_tier=requires.get("tier"),
            requires_addons=tuple(requires.get("addons", ())),
            excludes=tuple(item.get("excludes", ())),
            max_quantity=whole(item.get("quantity", {}).get("max")),
            references=frozen(item["references"]),
            rule=f"addon.{item['product']}.{item['id']}",
            where=source.where(path + ("id",)),
            spots=Spots(source, path),
            description=item.get("description", ""),
            min_version=requires.get("min_version"),
            when=when_of(source, path, item),
        )
        addons.setdefault(addon.product, {}).setdefault(addon.id, addon)
    devices: dict[str, DeviceLicense] = {}
    for index, item in enumerate(source.data.get("devices", ())):
        path = ("devices", index)
        license = DeviceLicense(item["product"], item["name"], frozen(item["references"]),
                                f"devices.{item['product']}", source.where(path + ("product",)))
        devices.setdefault(license.product, license)
    return addons, devices


def scope_of(catalog: Catalog, product: Product) -> conditions.Scope:
    """Return what a product's conditions are resolved against: by the checks, the compiler and matching alike."""
    return conditions.Scope(tuple(catalog.badges), product, tuple(catalog.addons.get(product.id, {})),
                            tuple(catalog.products), version_number, catalog.tiers_by_product)


def when_of(source: Source, path: tuple, item: dict) -> Node | None:
    """Return the parsed `when:` condition of a rule-file entry, or None when it has none."""
    return conditions.parse(source, path + ("when",)) if "when" in item else None


class Spots(Mapping):
    """Where each field of one item is written, by dotted name (`requires.tier`, `excludes.0`), looked up when asked."""

    # Looked up lazily: building a dict of every field of every item costs a large catalogue a tenth of a second.
    __slots__ = ("source", "path")

    def __init__(self, source: Source, path: tuple):
        self.source = source
        self.path = path

    def __getitem__(self, name: str) -> Location:
        key = self.path + tuple(int(part) if part.isdigit() else part for part in name.split("."))
        return self.source.locations[key]

    def _names(self) -> list[str]:
        size = len(self.path)
        return [".".join(str(part) for part in key[size:]) for key in self.source.locations
                if len(key) > size and key[:size] == self.path]

    def __iter__(self):
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def extra_of(catalog: Catalog, name: str, schema_file: str, code: str, what: str):
    """Return the model of the optional rule file NAME, or raise a located CODE problem when it is missing."""
    found = catalog.extras.get(name)
    if found is None:
        raise CompanionError([Problem(code, f"these rules declare no {what}",
                                      Location(display_path(catalog.directory / name)),
                                      hint=f"add {name}; its schema is rules/schemas/{schema_file}")])
    return found

