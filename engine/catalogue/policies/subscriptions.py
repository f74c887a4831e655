"""The subscription policy of rules/subscriptions.yaml: its model, how it is built and what `check` says about it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, Mapping

from engine.catalogue.model import PERPETUAL, Catalog, Product, Sellable, extra_of, frozen
from engine.catalogue.source import Source
from engine.problem import Location, Problem, did_you_mean

POLICY_FILE = "subscriptions.yaml"
POLICY_SCHEMA = "subscriptions.schema.json"
CHANGE, RENEWAL = "change", "renewal"

# policy.mid_term key -> (rule id, default value)
MID_TERM: dict[str, tuple[str, str]] = {
    "tier-upgrade": ("policy.mid-term-upgrade", "allowed"),
    "more-devices": ("policy.mid-term-devices", "allowed"),
    "more-addons": ("policy.mid-term-addons", "allowed"),
    "tier-downgrade": ("policy.mid-term-downgrade", "refused"),
    "fewer-devices": ("policy.mid-term-fewer-devices", "refused"),
    "addon-removal": ("policy.mid-term-removal", "refused"),
}


# ---------------------------------------------------------------------------------------------------------
# The policy model


@dataclass(frozen=True)
class PolicyRule:
    """One policy setting: its rule id, its value and where it is written."""

    rule: str
    value: str
    where: Location


@dataclass(frozen=True)
class AmendmentRef:
    """The commercial reference of one kind of amendment line, priced per month."""

    reference: str
    product: str
    kind: str  # tier | devices | addon
    item: str  # `essential->advanced`, `devices` or the add-on id
    rule: str
    where: Location  # the reference
    spot: Location  # what it names: the product, the `from` tier or the add-on id

    @property
    def label(self) -> str:
        """Name the amendment for a derivation: `epo essential->advanced`, `epo devices`."""
        return f"{self.product} {self.item}"


@dataclass(frozen=True)
class ProductAmendments:
    """The amendment references of one product."""

    product: str
    tiers: Mapping[tuple[str, str], AmendmentRef]
    devices: AmendmentRef | None
    addons: Mapping[str, AmendmentRef]
    where: Location


@dataclass(frozen=True)
class SubscriptionPolicy:
    """The subscription policy and every amendment reference of rules/subscriptions.yaml."""

    file: str
    unit: PolicyRule
    partial_month: PolicyRule
    last_month: PolicyRule
    mid_term: Mapping[str, PolicyRule]
    perpetual: PolicyRule
    renewal: PolicyRule
    late: PolicyRule
    products: Mapping[str, ProductAmendments]
    entries: tuple[AmendmentRef, ...]  # every reference in file order, duplicates included (the checks use them)
    where: Location  # the `amendments` key
    sellables: Mapping[str, Sellable] = field(default_factory=dict)

    def rules(self) -> dict[str, Location]:
        """Return the rule ids this file defines (tier changes reuse tiers.yaml's `upgrade.*` ids)."""
        found = {rule.rule: rule.where for rule in (self.unit, self.partial_month, self.last_month, self.perpetual,
                                                    self.renewal, self.late, *self.mid_term.values())}
        for entry in self.entries:
            if entry.kind != "tier":
                found.setdefault(entry.rule, entry.where)
        return found

    def allows(self, key: str) -> bool:
        """Tell whether the mid-term change `key` (e.g. `more-devices`) is allowed."""
        return self.mid_term[key].value == "allowed"


def build_policy(source: Source, catalog: Catalog) -> SubscriptionPolicy:
    """Build the policy from a schema-valid subscriptions.yaml; the first of duplicates wins (checks report)."""
    data = source.data
    policy = data["policy"]

    def setting(rule: str, path: tuple, default: str) -> PolicyRule:
        value = policy
        for key in path:
            value = value.get(key, {}) if isinstance(value, dict) else {}
        return PolicyRule(rule, value if isinstance(value, str) else default, source.where(("policy",) + path))

    entries: list[AmendmentRef] = []
    products: dict[str, ProductAmendments] = {}
    for index, item in enumerate(data["amendments"]):
        path = ("amendments", index)
        product_id = item["product"]
        tiers: dict[tuple[str, str], AmendmentRef] = {}
        for position, pair in enumerate(item.get("tiers", ())):
            at = path + ("tiers", position)
            ref = AmendmentRef(pair["reference"], product_id, "tier", f"{pair['from']}->{pair['to']}",
                               f"upgrade.{product_id}.{pair['from']}.{pair['to']}",
                               source.where(at + ("reference",)), source.where(at + ("from",)))
            entries.append(ref)
            tiers.setdefault((pair["from"], pair["to"]), ref)
        devices = None
        if "devices" in item:
            devices = AmendmentRef(item["devices"], product_id, "devices", "devices", f"amendment.{product_id}.devices",
                                   source.where(path + ("devices",)), source.where_key(path + ("devices",)))
            entries.append(devices)
        addons: dict[str, AmendmentRef] = {}
        for position, addon in enumerate(item.get("addons", ())):
            at = path + ("addons", position)
            ref = AmendmentRef(addon["reference"], product_id, "addon", addon["id"],
                               f"amendment.{product_id}.addon.{addon['id']}",
                               source.where(at + ("reference",)), source.where(at + ("id",)))
            entries.append(ref)
            addons.setdefault(addon["id"], ref)
        first = products.get(product_id)
        if first:  # a product listed twice (check_amendment_products reports it): merge, the first item wins
            tiers, addons = {**tiers, **first.tiers}, {**addons, **first.addons}
            devices = first.devices or devices
        products[product_id] = ProductAmendments(product_id, frozen(tiers), devices, frozen(addons),
                                                 first.where if first else source.where(path + ("product",)))
    built = SubscriptionPolicy(
        file=source.file,
        unit=setting("policy.unit", ("unit",), "calendar-month"),
        partial_month=setting("policy.partial-month", ("partial_month",), "charge"),
        last_month=setting("policy.last-month", ("last_month",), "charge"),  # never free unless the rules say so
        mid_term=frozen({key: setting(rule, ("mid_term", key), default) for key, (rule, default) in MID_TERM.items()}),
        perpetual=setting("policy.perpetual", ("perpetual",), "refused"),
        renewal=setting("policy.renewal", ("renewal", "start"), "old-end"),
        late=setting("policy.late-renewal", ("renewal", "late"), "backdate"),
        products=frozen(products),
        entries=tuple(entries),
        where=source.where_key(("amendments",)),
    )
    return replace(built, sellables=frozen(_sellables(built, catalog)))


def _sellables(policy: SubscriptionPolicy, catalog: Catalog) -> dict[str, Sellable]:
    """Index the amendment references as sellable items (kind `amendment`, offer `per-month`)."""
    found: dict[str, Sellable] = {}
    for entry in policy.entries:
        product = catalog.products.get(entry.product)
        name = product.name if product else entry.product
        if entry.kind == "tier" and product:
            source, target = (product.tier(tier) for tier in entry.item.split("->"))
            what = f"amendment {source.name if source else '?'} to {target.name if target else '?'}"
        elif entry.kind == "devices":
            license = catalog.devices.get(entry.product)
            name, what = (license.name if license else f"{name} device licence"), "amendment, per device"
        elif entry.kind == "addon":
            addon = catalog.addons.get(entry.product, {}).get(entry.item)
            what = f"{addon.name if addon else entry.item} amendment"
        else:
            what = f"amendment {entry.item}"
        found.setdefault(entry.reference, Sellable(entry.reference, f"{name}: {what}, per month", "amendment",
                                                   entry.product, "per-month", entry.rule, entry.where))
    return found


def policy_of(catalog: Catalog) -> SubscriptionPolicy:
    """Return the catalogue's subscription policy, or raise a located `no-policy` problem."""
    return extra_of(catalog, POLICY_FILE, POLICY_SCHEMA, "no-policy", "subscription policy")


# ---------------------------------------------------------------------------------------------------------
# Checks: what the schema cannot say about subscriptions.yaml


def check_amendment_products(catalog: Catalog) -> Iterator[Problem]:
    """unknown-ref, duplicate-id, unknown-offer: an amendments entry names a product that exists once, on subscription.

    Failing: `- product: epx` (did you mean 'epo'?), epo listed twice, or a product sold only perpetually.
    """
    policy = catalog.extras.get(POLICY_FILE)
    if policy is None:
        return
    source = catalog.sources[POLICY_FILE]
    seen: dict[str, Location] = {}
    for index, item in enumerate(source.data["amendments"]):
        product_id = item["product"]
        where = source.where(("amendments", index, "product"))
        product = catalog.products.get(product_id)
        if product is None:
            yield Problem("unknown-ref", f"amendments name product '{product_id}', which is not defined", where,
                          rule=f"product.{product_id}",
                          hint=did_you_mean(product_id, catalog.products) or "products: " + ", ".join(catalog.products))
        elif product_id in seen:
            yield Problem("duplicate-id", f"product {product_id} has two amendments entries (first at line "
                          f"{seen[product_id].line})", where, rule=product.rule, hint="merge them into one")
        elif not product.terms:
            yield Problem("unknown-offer", f"{product_id} is not sold by subscription; there is nothing to amend",
                          where, rule=product.rule, hint="remove this entry")
        seen.setdefault(product_id, where)


def check_amendment_items(catalog: Catalog) -> Iterator[Problem]:
    """unknown-ref, duplicate-id: each amendment reference names a declared upgrade path, device licence or add-on.

    Failing: `{from: essential, to: expert, ...}` for pme, which declares essential -> advanced -> expert only
    (an undeclared path); `{id: insulation-monitor, ...}` (did you mean 'insulation-monitoring'?);
    `devices:` for a product that sells no device licence; the same path or add-on twice.
    """
    policy = catalog.extras.get(POLICY_FILE)
    if policy is None:
        return
    seen: dict[tuple, Location] = {}
    for entry in policy.entries:
        product = catalog.products.get(entry.product)
        if product is None:
            continue  # reported by check_amendment_products
        key = (entry.product, entry.kind, entry.item)
        if key in seen:
            yield Problem("duplicate-id", f"amendment {entry.label} is declared twice (first at line "
                          f"{seen[key].line})", entry.spot, rule=entry.rule, hint="remove one of them")
            continue
        seen[key] = entry.spot
        if entry.kind == "tier":
            yield from _check_pair(product, entry)
        elif entry.kind == "devices" and entry.product not in catalog.devices:
            yield Problem("unknown-ref", f"{entry.product} sells no device licence (addons.yaml, devices:)",
                          entry.spot, rule=entry.rule, hint="remove devices: here, or add the device licence")
        elif entry.kind == "addon" and entry.item not in catalog.addons.get(entry.product, {}):
            names = list(catalog.addons.get(entry.product, {}))
            yield Problem("unknown-ref", f"amendment names add-on '{entry.item}' of {entry.product}, which is not "
                          "defined", entry.spot, rule=entry.rule,
                          hint=did_you_mean(entry.item, names) or "add-ons: " + (", ".join(names) or "none"))


def _check_pair(product: Product, entry: AmendmentRef) -> Iterator[Problem]:
    source, target = entry.item.split("->")
    tier_ids = [tier.id for tier in product.tiers]
    for name in (source, target):
        if name not in tier_ids:
            yield Problem("unknown-ref", f"amendment names tier '{name}' of {product.id}, which is not defined",
                          entry.spot, rule=entry.rule, hint=did_you_mean(name, tier_ids) or "tiers: " + ", ".join(tier_ids))
            return
    if _broken_paths(product):
        return  # tiers.yaml names an unknown tier in a path: reported there, and echoing it here only adds noise
    if (source, target) not in {(upgrade.source, upgrade.target) for upgrade in product.upgrades}:
        declared = [f"{upgrade.source}->{upgrade.target}" for upgrade in product.upgrades]
        yield Problem("unknown-ref", f"no upgrade path {source} -> {target} is declared for {product.id} in "
                      "tiers.yaml", entry.spot, rule=entry.rule,
                      hint=did_you_mean(entry.item, declared) or "declared paths: " + (", ".join(declared) or "none"))


def _broken_paths(product: Product) -> list:
    """Return the upgrade paths of tiers.yaml that name a tier the product does not have."""
    tier_ids = {tier.id for tier in product.tiers}
    return [upgrade for upgrade in product.upgrades if upgrade.source not in tier_ids or upgrade.target not in tier_ids]


def check_amendment_coverage(catalog: Catalog) -> Iterator[Problem]:
    """missing-reference: every declared upgrade path, device licence and add-on sold by subscription can be amended.

    Failing: tiers.yaml declares epo `{from: advanced, to: expert}` but subscriptions.yaml has no
    `{from: advanced, to: expert, reference: ...}` for epo.
    """
    policy = catalog.extras.get(POLICY_FILE)
    if policy is None:
        return
    for product in catalog.products.values():
        if not product.terms:
            continue
        entry = policy.products.get(product.id)
        where = entry.where if entry else policy.where
        for upgrade in product.upgrades:
            if upgrade in _broken_paths(product):
                continue  # an unknown tier in the path is reported by tiers.yaml's checks
            if not entry or (upgrade.source, upgrade.target) not in entry.tiers:
                yield Problem("missing-reference", f"no amendment reference for the upgrade path {product.id} "
                              f"{upgrade.source} -> {upgrade.target}", where, rule=upgrade.rule,
                              hint=f"add `{{from: {upgrade.source}, to: {upgrade.target}, reference: <SKU>}}` under tiers")
        license = catalog.devices.get(product.id)
        if license and any(offer != PERPETUAL for offer in license.references) and not (entry and entry.devices):
            yield Problem("missing-reference", f"no amendment reference for {product.id} device licences", where,
                          rule=f"amendment.{product.id}.devices", hint="add `devices: <SKU>`")
        for addon in catalog.addons.get(product.id, {}).values():
            if any(offer != PERPETUAL for offer in addon.references) and not (entry and addon.id in entry.addons):
                yield Problem("missing-reference", f"no amendment reference for add-on {product.id} {addon.id}",
                              where, rule=f"amendment.{product.id}.addon.{addon.id}",
                              hint=f"add `{{id: {addon.id}, reference: <SKU>}}` under addons")


def check_amendment_references(catalog: Catalog) -> Iterator[Problem]:
    """duplicate-reference: two amendments of subscriptions.yaml share a commercial reference.

    Failing: `{id: insulation-monitoring, reference: EPO-AMD-IMS}` and `{id: backup-power-testing, reference:
    EPO-AMD-IMS}`. (A reference also used by another rule file, e.g. `devices: EPO-DEV-SUB-3Y`, the 3-year EPO
    device licence of addons.yaml, is reported by the catalogue's own duplicate-reference check, as
    subscriptions.yaml registers its references as sellable items.)
    """
    policy = catalog.extras.get(POLICY_FILE)
    if policy is None:
        return
    seen: dict[str, tuple[str, Location]] = {}
    for entry in policy.entries:
        if entry.reference in seen:
            first_rule, first_where = seen[entry.reference]
            yield Problem("duplicate-reference", f"commercial reference {entry.reference} is also used by "
                          f"{first_rule} ({first_where})", entry.where, rule=entry.rule,
                          hint="every amendment needs its own reference")
        else:
            seen[entry.reference] = (entry.rule, entry.where)


def check_policy(catalog: Catalog) -> Iterator[Problem]:
    """Run every subscriptions.yaml check."""
    for check in (check_amendment_products, check_amendment_items, check_amendment_coverage,
                  check_amendment_references):
        yield from check(catalog)


def policy_references(policy: SubscriptionPolicy) -> dict[str, Sellable]:
    """Return the amendment references the policy sells."""
    return dict(policy.sellables)
