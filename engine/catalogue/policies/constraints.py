"""The further rules of rules/constraints.yaml: availability windows, constraints and notices.

- *availability*: an offer (a licence model, or one term of it) of a product is sold only in the listed
  countries and/or from / until a date; outside the window it is refused as `not-available`;
- *constraints*: a condition the configuration must meet, with its own id, message and hint;
- *notices*: a message that informs without refusing, when its condition holds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterator

from engine.catalogue.conditions import Node, parse
from engine.catalogue.model import Catalog
from engine.catalogue.source import Source
from engine.problem import Location, Problem, did_you_mean

FILE = "constraints.yaml"
SCHEMA = "constraints.schema.json"


@dataclass(frozen=True)
class Window:
    """Where and when one offer of a product is sold."""

    id: str
    product: str
    offer: str  # as written: subscription, perpetual or subscription-<months>
    license: str
    term: int | None
    countries: tuple[str, ...]
    start: dt.date | None
    end: dt.date | None
    when: Node | None
    rule: str
    where: Location
    where_offer: Location
    where_countries: Location
    where_start: Location
    where_end: Location


@dataclass(frozen=True)
class Constraint:
    """A condition a product's configurations must meet, with its own message."""

    id: str
    product: str
    when: Node | None
    require: Node
    code: str
    message: str
    hint: str
    rule: str
    where: Location


@dataclass(frozen=True)
class Notice:
    """A message for configurations of a product that meet a condition."""

    id: str
    product: str
    when: Node | None
    code: str
    message: str
    rule: str
    where: Location


@dataclass(frozen=True)
class FurtherRules:
    """Everything constraints.yaml declares."""

    availability: tuple[Window, ...]
    constraints: tuple[Constraint, ...]
    notices: tuple[Notice, ...]


def _day(text) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None  # the schema checked the shape; check() the day


def build(source: Source, catalog: Catalog) -> FurtherRules:
    """Build the further rules from a schema-valid constraints.yaml."""
    data = source.data
    windows = []
    for index, item in enumerate(data.get("availability", ())):
        at = ("availability", index)
        offer = item["offer"]
        license, _, term = offer.partition("-")
        windows.append(Window(
            item["id"], item["product"], offer, license, int(term) if term else None,
            tuple(item.get("countries", ())), _valid_day(item.get("from")), _valid_day(item.get("until")),
            parse(source, at + ("when",)) if "when" in item else None, f"availability.{item['id']}",
            source.where(at + ("id",)), source.where(at + ("offer",)), source.where(at + ("countries",)),
            source.where(at + ("from",)), source.where(at + ("until",))))
    constraints = tuple(
        Constraint(item["id"], item["product"],
                   parse(source, ("constraints", index, "when")) if "when" in item else None,
                   parse(source, ("constraints", index, "require")), item.get("code", "constraint"),
                   item["message"], item.get("hint", ""), f"constraint.{item['id']}",
                   source.where(("constraints", index, "id")))
        for index, item in enumerate(data.get("constraints", ())))
    notices = tuple(
        Notice(item["id"], item["product"], parse(source, ("notices", index, "when")) if "when" in item else None,
               item.get("code", "notice"), item["message"], f"notice.{item['id']}",
               source.where(("notices", index, "id")))
        for index, item in enumerate(data.get("notices", ())))
    return FurtherRules(tuple(windows), constraints, notices)


def _valid_day(text) -> dt.date | None:
    try:
        return _day(text)
    except ValueError:
        return None  # check() reports it at its line


def check(catalog: Catalog) -> Iterator[Problem]:
    """unknown-ref, bad-date, empty-window and duplicate-id problems of constraints.yaml.

    Failing: `product: epx` -> did you mean 'epo'?; `offer: subscription-24` where EPO sells 12 and 36.
    """
    further = catalog.extras.get(FILE)
    if further is None:
        return
    source = catalog.sources[FILE]
    seen: dict[str, Location] = {}
    items = [*further.availability, *further.constraints, *further.notices]
    for item in items:
        if item.rule in seen:
            yield Problem("duplicate-id", f"{item.rule} is declared twice (first at {seen[item.rule]})", item.where,
                          rule=item.rule, hint="give each rule its own id")
        seen.setdefault(item.rule, item.where)
        product = catalog.products.get(item.product)
        if product is None:
            yield Problem("unknown-ref", f"unknown product '{item.product}'", item.where, rule=item.rule,
                          hint=did_you_mean(item.product, catalog.products) or "products: " + ", ".join(catalog.products))
    for index, window in enumerate(further.availability):
        product = catalog.products.get(window.product)
        for key in ("from", "until"):
            text = source.data["availability"][index].get(key)
            if text and _valid_day(text) is None:
                yield Problem("bad-date", f"'{text}' is not a calendar date", source.where(("availability", index, key)),
                              rule=window.rule, hint="write a date such as 2025-06-01")
        if product and window.offer not in (*product.offers, *product.licenses):
            sold = ", ".join(product.licenses + product.offers)
            yield Problem("unknown-ref", f"{product.id} sells no '{window.offer}'", window.where_offer,
                          rule=window.rule, hint=did_you_mean(window.offer, product.licenses + product.offers)
                          or f"{product.id} sells: {sold}")
        if window.start and window.end and window.end < window.start:
            yield Problem("empty-window", f"the window ends ({window.end}) before it starts ({window.start})",
                          window.where_end, rule=window.rule, hint="swap the dates, or drop one")
        if not window.countries and not window.start and not window.end:
            yield Problem("empty-window", "an availability window needs countries, from or until", window.where,
                          rule=window.rule, hint="add countries: [..], from: YYYY-MM-DD or until: YYYY-MM-DD")


def rules(further: FurtherRules) -> dict:
    """Return the rule id of every further rule, with where it is written."""
    return {item.rule: item.where for item in (*further.availability, *further.constraints, *further.notices)}



