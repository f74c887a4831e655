"""Subscriptions: the policy in rules/subscriptions.yaml, mid-term amendments and renewals.

Months are calendar months counted from the start date (its activation date):

- Month k of a term (k = 0, 1, ...) begins on the k-th *anniversary* of the start: the same day of the month
  k calendar months later, or the last day of that month when it is shorter. Anniversaries are always
  counted from the original start, never from the previous anniversary, so a start on 2025-01-31 gives
  2025-02-28, 2025-03-31, 2025-04-30, ... (the 31st comes back), and a start on the leap day 2024-02-29
  gives 2024-03-29, ..., 2025-02-28, 2025-03-29, ...
- The term of N months ends on the N-th anniversary. The end date is the first day no longer covered:
  36 months from 2025-06-01 end on 2028-06-01, the last covered day is 2028-05-31. 12 months from
  2024-02-29 end on 2025-02-28; 36 months from 2025-01-31 end on 2028-01-31.
- An amendment dated D (start <= D < end) falls in month k, the one with anniversary(k) <= D <
  anniversary(k + 1). The months 0..k-1 are used up. With the default partial-month policy (`charge`, a
  started month counts) the amendment is charged N - k months: month k in full, and every later one.
  With `free`, month k is charged only when D is its first day (anniversary(k) == D): N - k months if so,
  else N - k - 1.
- The last month (k = N - 1) once begun (D after its first day) has its own policy key, `last_month`,
  because `free` would leave nothing to charge there: `charge` (the default) charges it, 1 month, whatever
  partial_month says; `free` charges 0 months and the answer says so in a notice; `refuse` refuses the
  amendment (renew instead). A change is never silently free.
- So, with `charge`: on the start date N months; on the day before the end 1 month; on or after the end
  date, or before the start, the amendment is refused. The vendor's example: 36 months from 2025-06-01,
  amended on 2025-09-01 = anniversary 3, so 36 - 3 = 33 months.

Amendment lines carry a commercial reference priced per month: a tier change along a declared upgrade path
(rule `upgrade.<product>.<from>.<to>`), device licences (`amendment.<product>.devices`) and add-ons
(`amendment.<product>.addon.<id>`); quantity x months = units. Device licences already paid for stay for the
term: after a tier upgrade that includes more devices, the subscription covers the new tier's included
devices plus the licences paid, and only licences beyond those are charged.

A renewal starts a new term at the old end date, for the current or a changed configuration (downgrades and
removals allowed); a renewal asked for after the end date is back-dated to the old end date (`late:
backdate`, the default: no unlicensed gap, and the lapsed days are not free) or starts on the renewal date
(`late: restart`).
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

from engine.catalogue import load as catalog_module
from engine.catalogue.model import (FIRST_DAY, LAST_DAY, PERPETUAL, SUBSCRIPTION, Catalog, Product, Sellable, frozen,
                          whole)
from engine.problem import CompanionError, Location, Problem, did_you_mean
from engine.inference.request import (AddonChoice, Configuration, Partner, Request, load_request_text, parse_configuration,
                            parse_partner, schema_problems)
from engine.catalogue.schema import json_path, register_rule_file
from engine.catalogue.source import Source, read_text

POLICY_FILE = "subscriptions.yaml"
REQUEST_SCHEMA = "amendment.schema.json"
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
# Calendar months


def add_months(day: dt.date, months: int) -> dt.date:
    """Return the same day of the month `months` later, or that month's last day when it is shorter."""
    year, month = divmod(day.year * 12 + day.month - 1 + months, 12)
    return dt.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def month_index(start: dt.date, day: dt.date) -> int:
    """Return k such that anniversary k <= day < anniversary k + 1 (day on or after start)."""
    k = (day.year - start.year) * 12 + day.month - start.month
    return k - 1 if add_months(start, k) > day else k


@dataclass(frozen=True)
class Proration:
    """Where a date falls in a term, and how many months an amendment dated then is charged."""

    start: dt.date
    term: int
    date: dt.date
    partial_month: str  # charge | free
    last_month: str = "charge"  # charge | free | refuse: a change inside the last month, after its first day

    @property
    def end(self) -> dt.date:
        """Return the first day after the term."""
        return add_months(self.start, self.term)

    @property
    def index(self) -> int:
        """Return the 0-based term month the date falls in."""
        return month_index(self.start, self.date)

    @property
    def month_start(self) -> dt.date:
        """Return the first day of the month the date falls in."""
        return add_months(self.start, self.index)

    @property
    def month_next(self) -> dt.date:
        """Return the first day of the following month."""
        return add_months(self.start, self.index + 1)

    @property
    def started(self) -> bool:
        """Tell whether the month had already begun before the date (the date is not its first day)."""
        return self.date > self.month_start

    @property
    def in_last_month(self) -> bool:
        """Tell whether the date is inside the last month of the term, after its first day."""
        return self.started and self.index == self.term - 1

    @property
    def months(self) -> int:
        """Return the months charged: the current month (per policy) and every later one."""
        if self.in_last_month and self.last_month != "refuse":
            return 0 if self.last_month == "free" else 1  # the last month's own key decides, not partial_month
        free = self.partial_month == "free" and self.started
        return self.term - self.index - (1 if free else 0)

    def steps(self, policy: "SubscriptionPolicy") -> list[str]:
        """Explain the count step by step, for people."""
        end, index = self.end, self.index
        lines = [f"term: {self.term} calendar months from {self.start} -> ends {end} "
                 f"(last day covered {end - dt.timedelta(days=1)}) [{policy.unit.rule}]"]
        if index:
            lines.append(f"used up: month{'s 1-' if index > 1 else ' '}{index} of {self.term}, "
                         f"{self.start} .. {self.month_start - dt.timedelta(days=1)}: not charged")
        last = self.month_next - dt.timedelta(days=1)
        days = (self.month_next - self.month_start).days
        clamp = ""
        if self.month_start.day != self.start.day:
            clamp = f"; month {index + 1} begins on {self.month_start} because " \
                    f"{calendar.month_name[self.month_start.month]} {self.month_start.year} has no day {self.start.day}"
        if not self.started:
            lines.append(f"amendment date {self.date}: the first day of month {index + 1} ({self.month_start} .. "
                         f"{last}, {days} days): charged in full{clamp}")
        else:
            left = (self.month_next - self.date).days
            if self.in_last_month:
                treatment = {"charge": "the last month, begun: charged in full",
                             "free": "the last month, begun: free, not charged",
                             "refuse": "the last month, begun: no change is accepted"}[self.last_month]
                decided = f"{policy.last_month.rule}: {self.last_month}"
            else:
                treatment = ("a started month counts: charged in full" if self.partial_month == "charge"
                             else "a started month is free: not charged")
                decided = f"{policy.partial_month.rule}: {self.partial_month}"
            lines.append(f"amendment date {self.date}: inside month {index + 1} ({self.month_start} .. {last}, "
                         f"{days} days), {left} day{'s' if left != 1 else ''} of it left; {treatment} "
                         f"[{decided}]{clamp}")
        later = self.term - index - 1
        if later:
            lines.append(f"still to come: month{'s ' + str(index + 2) + '-' if later > 1 else ' '}{self.term}, "
                         f"{self.month_next} .. {end - dt.timedelta(days=1)}: {later} whole month"
                         f"{'s' if later > 1 else ''}, charged")
        counted = f"{self.term} - {index}" + (" - 1" if self.months != self.term - index else "")
        lines.append(f"months charged: {counted} = {self.months}")
        return lines


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
            licence = catalog.devices.get(entry.product)
            name, what = (licence.name if licence else f"{name} device licence"), "amendment, per device"
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
    return catalog_module.extra_of(catalog, POLICY_FILE, "no-policy", "subscription policy")


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
        licence = catalog.devices.get(product.id)
        if licence and any(offer != PERPETUAL for offer in licence.references) and not (entry and entry.devices):
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


register_rule_file(POLICY_FILE, "subscriptions.schema.json", required=False)
catalog_module.EXTENSIONS[POLICY_FILE] = catalog_module.RuleFile(
    build_policy, check_policy, SubscriptionPolicy.rules, lambda policy: dict(policy.sellables))


# ---------------------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class Change:
    """A mid-term change or a renewal: its date and what changes (None / empty: unchanged)."""

    date: dt.date
    tier: str | None = None
    tier_written: str | None = None
    devices: int | None = None
    addons: tuple[AddonChoice, ...] = ()  # added (quantities add up)
    removals: tuple[AddonChoice, ...] = ()  # removed; quantity 0 = all of it
    term_months: int | None = None  # renewals only


@dataclass(frozen=True)
class AmendmentRequest:
    """A partner, a running subscription as activated (its configuration and start) and a change or renewal."""

    partner: Partner
    subscription: Configuration
    start: dt.date
    change: Change
    kind: str = CHANGE  # change | renewal
    file: str = "<request>"
    source: Source | None = field(default=None, compare=False, repr=False)

    def at(self, *path) -> tuple[str, str]:
        """Return where a request field is written and its JSON path (`change.tier`)."""
        path = tuple(self.kind if part == "@" else part for part in path)
        where = self.source.where(path) if self.source else Location(self.file)
        return str(where), json_path(path)


def _dates_as_text(data: Any) -> Any:
    """Write YAML dates as ISO text, so that YAML and JSON requests validate alike."""
    if isinstance(data, dict):
        return {key: _dates_as_text(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_dates_as_text(value) for value in data]
    if isinstance(data, (dt.date, dt.datetime)):
        return data.isoformat()
    return data


def check_amendment_request(source: Source, catalog: Catalog, kind: str) -> AmendmentRequest:
    """Check a parsed amend (kind `change`) or renew (kind `renewal`) request; raise CompanionError if wrong."""
    source = Source(source.file, _dates_as_text(source.data), source.locations, source.key_locations, source.text)
    problems = schema_problems(source, REQUEST_SCHEMA)
    if problems:
        raise CompanionError(problems)
    data = source.data
    other = RENEWAL if kind == CHANGE else CHANGE
    if kind not in data:
        verb = {CHANGE: "amend", RENEWAL: "renew"}
        if other in data:
            message = f"this is a{'' if other == RENEWAL else 'n'} {'renewal' if other == RENEWAL else 'amendment'} " \
                      f"request; `companion {verb[kind]}` needs '{kind}'"
            problems.append(Problem("wrong-kind", message, source.where_key((other,)), path=other,
                                    hint=f"run companion {verb[other]}"))
        else:
            problems.append(Problem("missing", f"the request needs '{kind}'", source.where(()), path="$",
                                    hint="see rules/schemas/amendment.schema.json"))
        raise CompanionError(problems)
    if other in data:
        problems.append(Problem("request-shape", f"a request holds '{kind}' or '{other}', not both",
                                source.where_key((other,)), path=other, hint=f"remove '{other}'"))
    partner = parse_partner(source, catalog, ("partner",), problems)
    configuration = parse_configuration(source, catalog, ("subscription",), problems, partial=False)
    product = catalog.products.get(configuration.product or "")
    if configuration.license == SUBSCRIPTION and configuration.term_months is None:
        terms = " or ".join(str(term) for term in product.terms) if product and product.terms else "12 or 36"
        problems.append(Problem("missing", "a subscription needs term_months", source.where(("subscription",)),
                                path="subscription", hint=f"set term_months to the term activated ({terms})"))
    start = _date(source, ("subscription", "start"), problems)
    change = _change(source, catalog, product, configuration, kind, problems)
    if problems:
        raise CompanionError(problems)
    return AmendmentRequest(partner, configuration, start, change, kind, source.file, source)


def _date(source: Source, path: tuple, problems: list[Problem]) -> dt.date:
    text = source.data
    for key in path:
        text = text[key]
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as error:
        problems.append(Problem("bad-date", f"'{text}' is not a calendar date: {error}", source.where(path),
                                path=json_path(path), hint="write a date such as 2025-06-01"))
        return FIRST_DAY
    if not FIRST_DAY <= day <= LAST_DAY:  # year 9999 plus a term is no date at all
        problems.append(Problem("bad-date", f"'{text}' is outside {FIRST_DAY} .. {LAST_DAY}", source.where(path),
                                path=json_path(path), hint="write a date such as 2025-06-01"))
        return FIRST_DAY
    return day


def _change(source: Source, catalog: Catalog, product: Product | None, configuration: Configuration, kind: str,
            problems: list[Problem]) -> Change:
    data = source.data[kind]
    date = _date(source, (kind, "date"), problems)
    tier_id = tier_written = data.get("tier")
    if product and tier_id is not None and product.tier(tier_id) is None:
        renamed = product.tier_by_former_name(tier_id)
        if renamed:
            tier_id = renamed.id
        else:
            names = [tier.id for tier in product.tiers]
            problems.append(_request_error(source, (kind, "tier"), "unknown-ref", f"{product.id} has no tier '{tier_id}'",
                                           did_you_mean(tier_id, names) or "tiers: " + ", ".join(names)))
    known = catalog.addons.get(product.id, {}) if product else {}
    addons = []
    for index, item in enumerate(data.get("addons", ())):
        if product and item["id"] not in known:
            names = list(known)
            problems.append(_request_error(source, (kind, "addons", index, "id"), "unknown-ref",
                                           f"{product.id} has no add-on '{item['id']}'",
                                           did_you_mean(item["id"], names) or "add-ons: " + (", ".join(names) or "none")))
        elif item["id"] in {addon.id for addon in addons}:
            problems.append(_request_error(source, (kind, "addons", index, "id"), "duplicate-addon",
                                           f"add-on '{item['id']}' is listed twice", "list it once with the total added"))
        else:
            addons.append(AddonChoice(item["id"], whole(item.get("quantity", 1))))
    held = {addon.id: addon.quantity for addon in configuration.addons}
    removals = []
    for index, item in enumerate(data.get("remove_addons", ())):
        at = (kind, "remove_addons", index)
        if item["id"] not in held:
            problems.append(_request_error(source, at + ("id",), "unknown-ref",
                                           f"the subscription has no add-on '{item['id']}' to remove",
                                           did_you_mean(item["id"], held)
                                           or "its add-ons: " + (", ".join(held) or "none")))
        elif whole(item.get("quantity", 0)) > held[item["id"]]:
            problems.append(_request_error(source, at + ("quantity",), "over-removal",
                                           f"removes {whole(item['quantity'])} of {item['id']}; the subscription has "
                                           f"{held[item['id']]}", f"remove at most {held[item['id']]}"))
        else:
            removals.append(AddonChoice(item["id"], whole(item.get("quantity", 0))))
    return Change(date, tier_id, tier_written, whole(data.get("devices")), tuple(addons), tuple(removals),
                  whole(data.get("term_months")))


def _request_error(source: Source, path: tuple, code: str, message: str, hint: str = "") -> Problem:
    return Problem(code, message, source.where(path), hint=hint, path=json_path(path))


def read_amendment(path: Path, catalog: Catalog, kind: str = CHANGE) -> AmendmentRequest:
    """Read and check an amend (`change`) or renew (`renewal`) request file."""
    source = load_request_text(read_text(path, str(path)), str(path))
    return check_amendment_request(source, catalog, kind)


def amendment_from_data(data: Any, catalog: Catalog, kind: str = CHANGE, file: str = "<request>") -> AmendmentRequest:
    """Check an amend or renew request given as parsed data (the web API, tests)."""
    if not isinstance(data, dict):
        raise CompanionError([Problem("request-shape", "a request is a mapping with partner, subscription and "
                                      f"{kind}", Location(file), path="$")])
    return check_amendment_request(Source(file, data), catalog, kind)


# ---------------------------------------------------------------------------------------------------------
# Amending and renewing


@dataclass
class Amendment:
    """What a mid-term change costs, what the subscription becomes, and why."""

    valid: bool
    violations: list[dict]
    notices: list[dict]
    lines: list[dict]
    subscription: dict  # the end state: the unchanged term and the changed configuration
    term: dict  # start, end, date, month and months charged
    rules_version: str
    steps: list[str] = field(default_factory=list)  # the month derivation, for people
    fired: list[dict] = field(default_factory=list)  # the rules that fired, in order
    configuration: Configuration | None = field(default=None, repr=False)

    def to_json(self, explain_rules: bool = False) -> dict:
        """Return the amendment as a JSON-ready document."""
        data = {"kind": "amendment", "valid": self.valid, "violations": self.violations, "notices": self.notices,
                "lines": self.lines, "subscription": self.subscription, "term": self.term,
                "rules_version": self.rules_version}
        if explain_rules:
            data["explanation"] = {"months": self.steps, "rules": self.fired}
        return data


@dataclass
class Renewal:
    """The new term, its configuration and bill of materials, and why."""

    valid: bool
    violations: list[dict]
    notices: list[dict]
    bom: list[dict]
    subscription: dict  # the renewed subscription: new start, term and end, and its configuration
    term: dict
    rules_version: str
    steps: list[str] = field(default_factory=list)
    fired: list[dict] = field(default_factory=list)
    configuration: Configuration | None = field(default=None, repr=False)

    def to_json(self, explain_rules: bool = False) -> dict:
        """Return the renewal as a JSON-ready document."""
        data = {"kind": "renewal", "valid": self.valid, "violations": self.violations, "notices": self.notices,
                "bom": self.bom, "subscription": self.subscription, "term": self.term,
                "rules_version": self.rules_version}
        if explain_rules:
            data["explanation"] = {"steps": self.steps, "rules": self.fired}
        return data


class _Outcome:
    """Collects violations, notices and fired rules while an amendment or renewal is worked out."""

    def __init__(self, request: AmendmentRequest, end: dt.date | None = None):
        self.request = request
        self.end = end  # the end of the running term, for hints
        self.violations: list[dict] = []
        self.notices: list[dict] = []
        self.fired: list[dict] = []

    def fire(self, rule: str, where: Location | str, what: str) -> None:
        self.fired.append({"rule": rule, "where": str(where), "what": what})

    def refuse(self, rule: str, where: Location | str, code: str, message: str, hint: str, *path) -> None:
        at, shown = self.request.at(*path)
        self.fire(rule, where, f"refused: {message}")
        self.violations.append({"rule": rule, "code": code, "message": message, "where": str(where), "hint": hint,
                                "at": at, "path": shown})

    def notice(self, rule: str, where: Location | str, code: str, message: str) -> None:
        self.notices.append({"rule": rule, "code": code, "message": message, "where": str(where)})


def amend(compiled, request: AmendmentRequest) -> Amendment:
    """Work out a mid-term amendment: the lines charged for the remaining months, the new state, and why."""
    from engine.inference.evaluate import evaluate

    catalog = compiled.catalog
    policy = policy_of(catalog)
    product = catalog.products[request.subscription.product]
    sub, change = request.subscription, request.change
    out = _Outcome(request)
    if sub.license == PERPETUAL:
        out.refuse(policy.perpetual.rule, policy.perpetual.where, "no-term",
                   "a perpetual licence has no term: there are no remaining months to amend",
                   "buy the added items as perpetual licences (companion validate), or move to a subscription",
                   "subscription", "license")
        return Amendment(False, out.violations, out.notices, [], _state(sub, request.start, None), {},
                         catalog.rules_version, [], out.fired, sub)
    proration = Proration(request.start, sub.term_months, change.date, policy.partial_month.value,
                          policy.last_month.value)
    end = out.end = proration.end
    term = {"start": str(request.start), "term_months": sub.term_months, "end": str(end),
            "last_day": str(end - dt.timedelta(days=1)), "date": str(change.date)}
    steps: list[str] = []
    if change.date < request.start:
        out.refuse(policy.unit.rule, policy.unit.where, "before-start",
                   f"the amendment date {change.date} is before the subscription starts ({request.start})",
                   f"date it on or after {request.start}", "@", "date")
    elif change.date >= end:
        out.refuse(policy.unit.rule, policy.unit.where, "after-end",
                   f"the amendment date {change.date} is on or after the end of the term ({end}; last day covered "
                   f"{end - dt.timedelta(days=1)})", "renew the subscription instead: companion renew", "@", "date")
    else:
        steps = proration.steps(policy)
        term.update(month=proration.index + 1, month_start=str(proration.month_start),
                    month_last_day=str(proration.month_next - dt.timedelta(days=1)), started=proration.started,
                    partial_month=policy.partial_month.value, last_month=policy.last_month.value,
                    months=proration.months)
        out.fire(policy.unit.rule, policy.unit.where,
                 f"{sub.term_months} calendar months from {request.start}: ends {end}; {change.date} is in month "
                 f"{proration.index + 1}")
        if proration.in_last_month:
            _last_month(out, policy, proration)
        else:
            out.fire(policy.partial_month.rule, policy.partial_month.where,
                     (f"{change.date} is inside month {proration.index + 1}, begun on {proration.month_start}: "
                      if proration.started else f"{change.date} is the first day of month {proration.index + 1}: ")
                     + f"partial_month {policy.partial_month.value}, {proration.months} months charged")
    months = proration.months if not out.violations else 0
    amendments = policy.products.get(product.id)
    lines: list[dict] = []
    tier = _tier_change(out, policy, product, sub, change, amendments, months, lines)
    devices = _device_change(out, policy, catalog, product, sub, tier, change, amendments, months, lines)
    addons = _addon_change(out, policy, catalog, product, sub, change, amendments, months, lines)
    if not lines and not out.violations:
        out.notice(policy.unit.rule, policy.unit.where, "no-change", "the change leaves the subscription as it is; "
                   "nothing is charged")
    written = change.tier_written if change.tier and tier == change.tier else sub.tier_written
    configuration = replace(sub, tier=tier, tier_written=written, devices=devices, addons=addons)
    verdict = evaluate(compiled, Request(request.partner, configuration, request.file))
    out.violations.extend(verdict.violations)
    out.notices.extend(verdict.notices)
    for item in verdict.trace:
        out.fire(item["rule"], item["where"], f"amended configuration: {item['condition']}")
    valid = not out.violations
    return Amendment(valid, out.violations, out.notices, lines if valid else [],
                     _state(configuration, request.start, end), term, catalog.rules_version, steps, out.fired,
                     configuration)


def _last_month(out: _Outcome, policy: SubscriptionPolicy, proration: Proration) -> None:
    """Apply policy.last-month to a change dated inside the last month of the term, after its first day."""
    rule, value = policy.last_month, policy.last_month.value
    month = (f"{proration.date} is inside the last month of the term (month {proration.term} of {proration.term}, "
             f"{proration.month_start} .. {proration.end - dt.timedelta(days=1)})")
    if value == "refuse":
        out.refuse(rule.rule, rule.where, "last-month", f"{month}; the policy accepts no change once the last month "
                   "has begun (last_month: refuse)",
                   f"renew instead: companion renew with the change; the new term starts on {proration.end}",
                   "@", "date")
        return
    out.fire(rule.rule, rule.where, f"{month}: last_month {value}, "
             f"{proration.months} month{'' if proration.months == 1 else 's'} charged")
    if value == "free":
        out.notice(rule.rule, rule.where, "last-month-free",
                   f"{month}: last_month free, nothing is charged for this change")


def _line(ref: AmendmentRef, policy: SubscriptionPolicy, quantity: int, months: int) -> dict:
    sellable = policy.sellables[ref.reference]
    units = quantity * months
    derivation = f"{months} month{'' if months == 1 else 's'} x " \
        + (f"{quantity} x " if quantity != 1 or ref.kind == "devices" else "") + ref.label
    if quantity != 1:
        derivation += f" = {units}"
    return {"reference": ref.reference, "description": sellable.description, "quantity": quantity,
            "months": months, "units": units, "derivation": derivation, "rule": ref.rule, "where": str(ref.where)}


def _missing_reference(out: _Outcome, policy: SubscriptionPolicy, rule: str, what: str, *path) -> None:
    out.refuse(rule, policy.where, "no-amendment-reference", f"no amendment reference is declared for {what}",
               "add it to subscriptions.yaml (companion check lists what is missing)", *path)


def _tier_change(out, policy, product, sub, change, amendments, months, lines) -> str:
    """Check and charge a tier change; return the tier of the end state."""
    if change.tier is None or change.tier == sub.tier:
        return sub.tier
    old, new = product.tier(sub.tier), product.tier(change.tier)
    if new.rank < old.rank:
        rule = policy.mid_term["tier-downgrade"]
        out.refuse(rule.rule, rule.where, "mid-term-downgrade",
                   f"tier {old.id} cannot go down to {new.id} during the term; downgrades are not credited",
                   f"downgrade at the renewal on {out.end}: companion renew with tier: {new.id}", "@", "tier")
        return sub.tier
    upgrade = next((item for item in product.upgrades if (item.source, item.target) == (old.id, new.id)), None)
    if upgrade is None:
        paths = [f"{item.source}->{item.target} ({item.where})" for item in product.upgrades if item.source == old.id]
        rule = policy.mid_term["tier-upgrade"]
        out.refuse(rule.rule, rule.where, "not-an-upgrade-path",
                   f"{product.id} declares no upgrade path {old.id} -> {new.id}",
                   ("upgrade paths from " + old.id + ": " + ", ".join(paths)) if paths
                   else f"no upgrade path leaves {old.id}", "@", "tier")
        return sub.tier
    rule = policy.mid_term["tier-upgrade"]
    if not policy.allows("tier-upgrade"):
        out.refuse(rule.rule, rule.where, "not-allowed-mid-term", "the policy allows no tier upgrade mid-term",
                   f"upgrade at the renewal on {out.end}: companion renew with tier: {new.id}", "@", "tier")
        return sub.tier
    ref = amendments.tiers.get((old.id, new.id)) if amendments else None
    if ref is None:
        _missing_reference(out, policy, upgrade.rule, f"{product.id} {old.id} -> {new.id}", "@", "tier")
        return sub.tier
    out.fire(rule.rule, rule.where, f"tier upgrade {old.id} -> {new.id} allowed mid-term")
    out.fire(upgrade.rule, upgrade.where, f"declared upgrade path {old.id} -> {new.id}: {months} months x "
             f"{ref.reference}")
    lines.append(_line(ref, policy, 1, months))
    return new.id


def _device_change(out, policy, catalog, product, sub, tier_id, change, amendments, months, lines) -> int:
    """Check and charge more devices; return the device total of the end state.

    Device licences paid for stay for the term: paid = devices beyond what the old tier includes. The end
    state covers the new tier's included devices plus the licences paid; only licences beyond those are
    charged.
    """
    old_tier, new_tier = product.tier(sub.tier), product.tier(tier_id)
    wanted = sub.devices if change.devices is None else change.devices
    if wanted < sub.devices:
        rule = policy.mid_term["fewer-devices"]
        out.refuse(rule.rule, rule.where, "mid-term-removal",
                   f"devices cannot go down from {sub.devices} to {wanted} during the term; licences are not credited",
                   f"reduce them at the renewal on {out.end}: companion renew with devices: {wanted}", "@", "devices")
        wanted = sub.devices
    paid = max(0, sub.devices - old_tier.devices_included)
    needed = max(paid, wanted - new_tier.devices_included)
    quantity = needed - paid
    total = wanted if needed == 0 else new_tier.devices_included + needed
    if total > wanted and tier_id != sub.tier:
        ref = amendments.devices if amendments and amendments.devices else policy.mid_term["more-devices"]
        out.notice(ref.rule, ref.where, "devices-kept",
                   f"the {paid} device licences paid for stay until the end of the term; {new_tier.name} includes "
                   f"{new_tier.devices_included} devices, so the subscription now covers {total} devices")
    if quantity <= 0:
        return total
    rule = policy.mid_term["more-devices"]
    if not policy.allows("more-devices"):
        out.refuse(rule.rule, rule.where, "not-allowed-mid-term", "the policy allows no more devices mid-term",
                   f"add them at the renewal on {out.end}: companion renew", "@", "devices")
        return sub.devices  # the amendment is refused; the state is not used
    ref = amendments.devices if amendments else None
    if ref is None:
        _missing_reference(out, policy, f"amendment.{product.id}.devices", f"{product.id} devices", "@", "devices")
        return sub.devices
    out.fire(rule.rule, rule.where, f"more devices allowed mid-term: {sub.devices} -> {total}")
    out.fire(ref.rule, ref.where, f"device licences {paid} -> {needed} (tier {new_tier.id} includes "
             f"{new_tier.devices_included}): {quantity} x {months} months")
    lines.append(_line(ref, policy, quantity, months))
    return total


def _addon_change(out, policy, catalog, product, sub, change, amendments, months, lines) -> tuple[AddonChoice, ...]:
    """Check and charge added add-ons, refuse removals; return the add-ons of the end state."""
    held = {addon.id: addon.quantity for addon in sub.addons}
    for index, removal in enumerate(change.removals):
        rule = policy.mid_term["addon-removal"]
        out.refuse(rule.rule, rule.where, "mid-term-removal",
                   f"add-on {removal.id} cannot be removed during the term; add-ons are not credited",
                   f"remove it at the renewal on {out.end}: companion renew with remove_addons", "@", "remove_addons",
                   index, "id")
    for index, addon in enumerate(change.addons):
        rule = policy.mid_term["more-addons"]
        if not policy.allows("more-addons"):
            out.refuse(rule.rule, rule.where, "not-allowed-mid-term", "the policy allows no added add-ons mid-term",
                       f"add them at the renewal on {out.end}: companion renew", "@", "addons", index, "id")
            continue
        ref = amendments.addons.get(addon.id) if amendments else None
        if ref is None:
            _missing_reference(out, policy, f"amendment.{product.id}.addon.{addon.id}", f"{product.id} {addon.id}",
                               "@", "addons", index, "id")
            continue
        out.fire(rule.rule, rule.where, f"add-on {addon.id} added mid-term: {held.get(addon.id, 0)} -> "
                 f"{held.get(addon.id, 0) + addon.quantity}")
        out.fire(ref.rule, ref.where, f"{addon.quantity} x {months} months")
        lines.append(_line(ref, policy, addon.quantity, months))
        held[addon.id] = held.get(addon.id, 0) + addon.quantity
    order = [addon.id for addon in sub.addons] + [addon.id for addon in change.addons if addon.id not in
                                                   {held_addon.id for held_addon in sub.addons}]
    return tuple(AddonChoice(addon_id, held[addon_id]) for addon_id in order if addon_id in held)


def _state(configuration: Configuration, start: dt.date, end: dt.date | None) -> dict:
    data = configuration.to_json()
    data["start"] = str(start)
    if end is not None:
        data["end"] = str(end)
        data["last_day"] = str(end - dt.timedelta(days=1))
    return data


def renew(compiled, request: AmendmentRequest) -> Renewal:
    """Work out a renewal: the new term from the old end date, its configuration and bill of materials, and why."""
    from engine.inference.evaluate import evaluate

    catalog = compiled.catalog
    policy = policy_of(catalog)
    product = catalog.products[request.subscription.product]
    sub, change = request.subscription, request.change
    out = _Outcome(request)
    if sub.license == PERPETUAL:
        out.refuse(policy.perpetual.rule, policy.perpetual.where, "no-term",
                   "a perpetual licence has no term: there is nothing to renew",
                   "perpetual licences need no renewal", "subscription", "license")
        return Renewal(False, out.violations, out.notices, [], _state(sub, request.start, None), {},
                       catalog.rules_version, [], out.fired, sub)
    end = add_months(request.start, sub.term_months)
    new_term = change.term_months or sub.term_months
    steps = [f"current term: {sub.term_months} calendar months from {request.start} -> ends {end} "
             f"(last day covered {end - dt.timedelta(days=1)}) [{policy.unit.rule}]"]
    new_start = end
    if change.date < request.start:
        out.refuse(policy.unit.rule, policy.unit.where, "before-start",
                   f"the renewal date {change.date} is before the subscription starts ({request.start})",
                   f"date it on or after {request.start}", "@", "date")
    elif change.date < end:
        steps.append(f"renewal asked for on {change.date}, before the end: the current term runs to its end; the "
                     f"new term starts on {end} [{policy.renewal.rule}]")
        out.fire(policy.renewal.rule, policy.renewal.where, f"new term starts at the old end date {end}")
    elif policy.late.value == "backdate":
        lapsed = (change.date - end).days
        new_end = add_months(end, new_term)
        if change.date >= new_end:
            out.refuse(policy.late.rule, policy.late.where, "renewal-lapsed",
                       f"the renewal date {change.date} is after the whole back-dated term ({end} .. {new_end})",
                       "order a new subscription instead (companion validate)", "@", "date")
        else:
            steps.append(f"renewal asked for on {change.date}, {lapsed} days after the end: back-dated, the new term "
                         f"starts on the old end date {end} [{policy.late.rule}: backdate]")
            out.fire(policy.late.rule, policy.late.where, f"late by {lapsed} days: back-dated to {end}")
            out.notice(policy.late.rule, policy.late.where, "late-renewal",
                       f"renewed {lapsed} days after the end ({end}); the new term is back-dated to start on {end} so "
                       "that the licence has no gap; the lapsed days are part of the new term")
    else:
        lapsed = (change.date - end).days
        new_start = change.date
        steps.append(f"renewal asked for on {change.date}, {lapsed} days after the end: the new term starts on the "
                     f"renewal date [{policy.late.rule}: restart]")
        out.fire(policy.late.rule, policy.late.where, f"late by {lapsed} days: restarts on {change.date}")
        out.notice(policy.late.rule, policy.late.where, "late-renewal",
                   f"renewed {lapsed} days after the end ({end}); the new term starts on {change.date}; the system "
                   f"was unlicensed from {end} to {change.date - dt.timedelta(days=1)}")
    new_end = add_months(new_start, new_term)
    steps.append(f"new term: {new_term} calendar months from {new_start} -> ends {new_end} "
                 f"(last day covered {new_end - dt.timedelta(days=1)})")
    configuration = _renewed_configuration(out, policy, product, sub, change, new_term)
    verdict = evaluate(compiled, Request(request.partner, configuration, request.file))
    out.violations.extend(verdict.violations)
    out.notices.extend(verdict.notices)
    for item in verdict.trace:
        out.fire(item["rule"], item["where"], f"renewed configuration: {item['condition']}")
    term = {"start": str(request.start), "term_months": sub.term_months, "end": str(end), "date": str(change.date),
            "new_start": str(new_start), "new_term_months": new_term, "new_end": str(new_end),
            "new_last_day": str(new_end - dt.timedelta(days=1))}
    valid = not out.violations
    return Renewal(valid, out.violations, out.notices, verdict.bom if valid else [],
                   _state(configuration, new_start, new_end), term, catalog.rules_version, steps, out.fired,
                   configuration)


def _renewed_configuration(out, policy, product, sub, change, new_term) -> Configuration:
    tier = change.tier or sub.tier
    if tier != sub.tier:
        old, new = product.tier(sub.tier), product.tier(tier)
        direction = "downgrade" if new.rank < old.rank else "change"
        out.fire(policy.renewal.rule, policy.renewal.where, f"tier {direction} {old.id} -> {new.id} at renewal")
        if new.rank < old.rank:
            out.notice(policy.renewal.rule, policy.renewal.where, "renewal-downgrade",
                       f"tier {old.id} goes down to {new.id} with the new term (allowed at renewal)")
    devices = sub.devices if change.devices is None else change.devices
    if devices < sub.devices:
        out.notice(policy.renewal.rule, policy.renewal.where, "renewal-removal",
                   f"devices go down from {sub.devices} to {devices} with the new term (allowed at renewal)")
    held = {addon.id: addon.quantity for addon in sub.addons}
    order = [addon.id for addon in sub.addons]
    for removal in change.removals:
        held[removal.id] -= removal.quantity or held[removal.id]
        left = f"goes down to {held[removal.id]}" if held[removal.id] else "is removed"
        out.notice(policy.renewal.rule, policy.renewal.where, "renewal-removal",
                   f"add-on {removal.id} {left} with the new term (allowed at renewal)")
    for addon in change.addons:
        if addon.id not in held:
            order.append(addon.id)
        held[addon.id] = held.get(addon.id, 0) + addon.quantity
    addons = tuple(AddonChoice(addon_id, held[addon_id]) for addon_id in order if held.get(addon_id, 0) > 0)
    written = change.tier_written if change.tier else sub.tier_written
    return replace(sub, term_months=new_term, tier=tier, tier_written=written, devices=devices, addons=addons)
