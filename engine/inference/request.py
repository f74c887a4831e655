"""Read a partner's request (YAML or JSON) into typed values, or report located request errors."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.catalogue.model import Catalog, Product, whole
from engine.problem import CompanionError, Location, Problem, did_you_mean
from engine.catalogue.schema import SCHEMA_DIR, describe, json_path, schema_validator
from engine.catalogue.source import Source, dates_as_text, parse_yaml, read_text

REQUIRED_CHOICES = ("product", "license", "tier")


@dataclass(frozen=True)
class Partner:
    """Who asks: the badges they hold, their country and purchasing account."""

    badges: tuple[str, ...]
    country: str | None = None
    purchasing_account: str | None = None
    company: str | None = None


@dataclass(frozen=True)
class AddonChoice:
    """An add-on in a configuration, and its quantity."""

    id: str
    quantity: int = 1


@dataclass(frozen=True)
class Configuration:
    """A licence configuration; fields are None while a partial configuration leaves them open."""

    product: str | None = None
    version: str | None = None
    license: str | None = None
    term_months: int | None = None
    tier: str | None = None
    tier_written: str | None = None  # the name as the partner wrote it (a former name, say)
    devices: int = 0
    addons: tuple[AddonChoice, ...] = ()

    def to_json(self) -> dict:
        """Return the configuration as it would be written in a request."""
        data: dict[str, Any] = {key: getattr(self, key) for key in
                                ("product", "version", "license", "term_months", "tier") if getattr(self, key)}
        data["devices"] = self.devices
        data["addons"] = [{"id": addon.id, "quantity": addon.quantity} for addon in self.addons]
        return data


@dataclass(frozen=True)
class Request:
    """A partner and a configuration, with where the request came from."""

    partner: Partner
    configuration: Configuration
    file: str = "<request>"
    source: Source | None = field(default=None, compare=False, repr=False)
    date: dt.date | None = None  # the quote date; None: the server's date


def request_validator(schema_file: str = "request.schema.json"):
    """Return the validator for a request schema."""
    assert (SCHEMA_DIR / schema_file).exists()
    return schema_validator(schema_file)


def load_request_text(text: str, display: str) -> Source:
    """Parse request text (YAML or JSON) with locations; raise CompanionError on malformed input."""
    source = parse_yaml(text, display)
    if source.problems:
        raise CompanionError(source.problems)
    if not isinstance(source.data, dict):
        raise CompanionError([Problem("request-shape", "a request is a mapping with partner and configuration",
                                      Location(display, 1, 1))])
    return source


def read_request(path: Path, catalog: Catalog, partial: bool = False) -> Request:
    """Read and check a request file."""
    source = load_request_text(read_text(path, str(path)), str(path))
    return check_request(source, catalog, partial=partial)


def request_from_data(data: Any, catalog: Catalog, partial: bool = False, file: str = "<request>") -> Request:
    """Check a request given as already-parsed JSON data (the web API)."""
    if not isinstance(data, dict):
        raise CompanionError([Problem("request-shape", "a request is a JSON object with partner and configuration",
                                      Location(file), path="$")])
    return check_request(Source(file, data), catalog, partial=partial)


def schema_problems(source: Source, schema_file: str) -> list[Problem]:
    """Validate source against a request schema; each problem carries its JSON path."""
    problems = []
    for error in request_validator(schema_file).iter_errors(source.data):
        problem = describe(error, source)
        path = tuple(error.absolute_path)
        problems.append(Problem("request-schema", problem.message.split(": ", 1)[-1] if path else problem.message,
                                problem.where, hint=problem.hint, path=json_path(path)))
    return problems


def check_request(source: Source, catalog: Catalog, partial: bool = False) -> Request:
    """Check a parsed request against the schema and the catalogue's ids; raise CompanionError if wrong."""
    source = dates_as_text(source)
    problems = schema_problems(source, "request.schema.json")
    if problems:
        raise CompanionError(problems)
    partner = parse_partner(source, catalog, ("partner",), problems)
    configuration = parse_configuration(source, catalog, ("configuration",), problems, partial)
    day = parse_day(source, ("date",), problems) if "date" in source.data else None
    if problems:
        raise CompanionError(problems)
    return Request(partner, configuration, source.file, source, day)


def parse_day(source: Source, path: tuple, problems: list[Problem]) -> dt.date | None:
    """Read a calendar date written as YYYY-MM-DD; a date that does not exist is a located problem."""
    text = str(_get(source.data, path))
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        problems.append(_error(source, path, "bad-date", f"'{text}' is not a calendar date: {error}",
                               "write a date such as 2025-06-01"))
        return None


def parse_partner(source: Source, catalog: Catalog, at: tuple, problems: list[Problem]) -> Partner:
    """Read the partner block, refusing unknown badges."""
    data = _get(source.data, at)
    badges = []
    for index, badge in enumerate(data["badges"]):
        if badge not in catalog.badges:
            problems.append(_error(source, at + ("badges", index), "unknown-ref", f"unknown badge '{badge}'",
                                   did_you_mean(badge, catalog.badges) or "badges: " + ", ".join(catalog.badges)))
        elif badge not in badges:
            badges.append(badge)
    return Partner(tuple(badges), data.get("country"), data.get("purchasing_account"), data.get("company"))


def parse_configuration(source: Source, catalog: Catalog, at: tuple, problems: list[Problem],
                        partial: bool) -> Configuration:
    """Read a configuration block, resolving former tier names and refusing unknown ids."""
    data = _get(source.data, at)
    if not partial:
        for key in REQUIRED_CHOICES:
            if key not in data:
                problems.append(_error(source, at, "missing", f"configuration needs '{key}'",
                                       _choices_hint(catalog, key, data.get("product"))))
    product_id = data.get("product")
    product = catalog.products.get(product_id) if product_id else None
    if product_id and product is None:
        problems.append(_error(source, at + ("product",), "unknown-ref", f"unknown product '{product_id}'",
                               did_you_mean(product_id, catalog.products)
                               or "products: " + ", ".join(catalog.products)))
    version = data.get("version")
    if product and version is not None and version not in product.versions:
        problems.append(_error(source, at + ("version",), "unknown-version",
                               f"{product.id} has no version '{version}'",
                               did_you_mean(version, product.versions) or "versions: " + ", ".join(product.versions)))
    tier_id = data.get("tier")
    tier_written = tier_id
    if product and tier_id is not None and product.tier(tier_id) is None:
        renamed = product.tier_by_former_name(tier_id)
        if renamed:
            tier_id = renamed.id  # understood; the tier's rule adds a notice
        else:
            names = [tier.id for tier in product.tiers]
            problems.append(_error(source, at + ("tier",), "unknown-ref", f"{product.id} has no tier '{tier_id}'",
                                   did_you_mean(tier_id, names) or "tiers: " + ", ".join(names)))
    addons = []
    seen: set[str] = set()
    for index, item in enumerate(data.get("addons", [])):
        addon_id = item["id"]
        if product and addon_id not in catalog.addons.get(product.id, {}):
            problems.append(_error(source, at + ("addons", index, "id"), "unknown-ref",
                                   f"{product.id} has no add-on '{addon_id}'", _addon_hint(catalog, product, addon_id)))
        elif addon_id in seen:
            problems.append(_error(source, at + ("addons", index, "id"), "duplicate-addon",
                                   f"add-on '{addon_id}' is listed twice", "list it once with the total quantity"))
        seen.add(addon_id)
        addons.append(AddonChoice(addon_id, whole(item.get("quantity", 1))))
    return Configuration(
        product=product_id,
        version=version,
        license=data.get("license"),
        term_months=whole(data.get("term_months")),
        tier=tier_id,
        tier_written=tier_written,
        devices=whole(data.get("devices", 0)),
        addons=tuple(addons),
    )


def _get(data: Any, path: tuple) -> Any:
    for key in path:
        data = data[key]
    return data


def _error(source: Source, path: tuple, code: str, message: str, hint: str = "") -> Problem:
    return Problem(code, message, source.where(path), hint=hint, path=json_path(path))


def _choices_hint(catalog: Catalog, key: str, product_id: str | None) -> str:
    product = catalog.products.get(product_id) if product_id else None
    if key == "product":
        return "products: " + ", ".join(catalog.products)
    if key == "license":
        return "licence models: " + ", ".join(product.licenses if product else ("subscription", "perpetual"))
    if key == "tier" and product:
        return "tiers: " + ", ".join(tier.id for tier in product.tiers)
    return ""


def _addon_hint(catalog: Catalog, product: Product, addon_id: str) -> str:
    elsewhere = [other for other, addons in catalog.addons.items() if addon_id in addons]
    if elsewhere:
        return f"'{addon_id}' is an add-on of {', '.join(elsewhere)}, not {product.id}"
    names = list(catalog.addons.get(product.id, {}))
    return did_you_mean(addon_id, names) or ("add-ons: " + ", ".join(names) if names else "it has no add-ons")


def dump_json(data: Any) -> str:
    """Serialise a verdict or problem list for output."""
    return json.dumps(data, indent=2, default=str, ensure_ascii=False)
