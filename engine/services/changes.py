"""Amendment and renewal requests: read, schema-checked and resolved against the catalogue."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.catalogue.model import FIRST_DAY, LAST_DAY, SUBSCRIPTION, Catalog, Product, whole
from engine.catalogue.policies.subscriptions import CHANGE, RENEWAL
from engine.catalogue.schema import json_path
from engine.catalogue.source import Source, dates_as_text, read_text
from engine.inference.request import (AddonChoice, Configuration, Partner, load_request_text, parse_configuration,
                                      parse_partner, schema_problems)
from engine.problem import CompanionError, Location, Problem, did_you_mean

REQUEST_SCHEMA = "amendment.schema.json"


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


def check_amendment_request(source: Source, catalog: Catalog, kind: str) -> AmendmentRequest:
    """Check a parsed amend (kind `change`) or renew (kind `renewal`) request; raise CompanionError if wrong."""
    source = dates_as_text(source)
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
