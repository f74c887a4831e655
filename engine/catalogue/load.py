"""Load a rules directory: source -> schema -> model -> check, collecting every problem."""

from __future__ import annotations

import gc
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from engine.catalogue import model
from engine.catalogue.check import check_catalog
from engine.catalogue.model import Catalog, Sellable, frozen
from engine.problem import CompanionError, Location, Problem, did_you_mean
from engine.catalogue.files import POLICIES, RULE_FILES, rules_version
from engine.catalogue.schema import BUNDLED_RULES, validate_source
from engine.catalogue.source import Source, dates_as_text, display_path, load_yaml


def rules_of(catalog: Catalog) -> dict[str, Location]:
    """Return every rule id of the catalogue, further rule files included, with where it is written."""
    found = catalog.rules()
    for name, rule_file in POLICIES.items():
        if rule_file.rules and name in catalog.extras:
            found.update(rule_file.rules(catalog.extras[name]))
    return found


def offer_text(offer: str) -> str:
    """Describe an offer key for people: `subscription, 36 months` or `perpetual`."""
    if offer == model.PERPETUAL:
        return "perpetual"
    return f"subscription, {offer.split('-', 1)[1]} months"


def load_catalog(directory: Path | str | None = None) -> Catalog:
    """Load and check a rules directory; raise CompanionError holding every problem, sorted."""
    # Loading allocates millions of small objects that stay alive until it ends; the cycle collector would
    # walk them again and again (a third of the CPU time on the 300-product synthetic catalogue).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load_catalog(directory)
    finally:
        if collecting:
            gc.enable()


def _load_catalog(directory: Path | str | None) -> Catalog:
    directory = Path(directory) if directory is not None else BUNDLED_RULES
    try:
        exists = directory.is_dir()
    except (OSError, ValueError):  # a name too long for the file system, or holding a NUL byte
        exists = False
    if not exists:
        raise CompanionError([Problem("no-rules", "no such rules directory", Location(str(directory)),
                                      hint="pass --rules DIR with badges.yaml, tiers.yaml and addons.yaml")])
    problems: list[Problem] = []
    sources: dict[str, Source] = {}
    contents: dict[str, bytes] = {}
    for name, rule_file in RULE_FILES.items():
        path = directory / name
        shown = display_path(path)
        if not path.exists():
            if rule_file.required:
                problems.append(Problem("missing-file", f"required rule file {name} is missing", Location(shown),
                                        hint=f"create it; its schema is rules/schemas/{rule_file.schema}"))
            continue
        try:
            source = dates_as_text(load_yaml(path, shown))
        except CompanionError as error:
            problems.extend(error.problems)
            continue
        contents[name] = source.text.encode("utf-8")  # the file's bytes: read_text decoded them strictly
        # Report a spot once: a source problem (e.g. `yes` read as a boolean) explains the schema's complaint.
        spotted = {problem.where for problem in source.problems}
        schema_problems = [problem for problem in validate_source(source, rule_file.schema) if problem.where not in spotted]
        problems.extend(source.problems + schema_problems)
        if not source.problems and not schema_problems:
            sources[name] = source
    problems.extend(_unknown_files(directory))
    if any(problem.severity == "error" for problem in problems):
        raise CompanionError(problems)
    catalog = build_catalog(directory, sources, rules_version(contents))
    extension_checks = [rule.check for rule in POLICIES.values() if rule.check] + [duplicate_references]
    problems.extend(check_catalog(catalog, extension_checks))
    if any(problem.severity == "error" for problem in problems):
        raise CompanionError(problems)
    return catalog if not problems else _with_warnings(catalog, problems)


def _with_warnings(catalog: Catalog, problems: list[Problem]) -> Catalog:
    extras = dict(catalog.extras)
    extras["warnings"] = tuple(sorted(problems, key=Problem.sort_key))
    return replace(catalog, extras=frozen(extras))


def warnings_of(catalog: Catalog) -> tuple[Problem, ...]:
    """Return the warnings found while loading the catalogue."""
    return tuple(catalog.extras.get("warnings", ()))


def _unknown_files(directory: Path) -> list[Problem]:
    problems = []
    for path in sorted(directory.glob("*.y*ml")):
        if path.name not in RULE_FILES:
            problems.append(Problem("unknown-file", f"{path.name} is not a rule file Companion reads",
                                    Location(display_path(path)), severity="warning",
                                    hint=did_you_mean(path.name, RULE_FILES) or "rule files: " + ", ".join(RULE_FILES)))
    return problems


def build_catalog(directory: Path, sources: dict[str, Source], rules_version: str) -> Catalog:
    """Build the typed catalogue from schema-valid sources."""
    badges = model.build_badges(sources["badges.yaml"])
    products = model.build_products(sources["tiers.yaml"])
    addons, devices = model.build_addons(sources["addons.yaml"])
    catalog = Catalog(
        directory=directory,
        products=frozen(products),
        badges=frozen(badges),
        addons=frozen({product: frozen(items) for product, items in addons.items()}),
        devices=frozen(devices),
        references=frozen({}),
        sources=frozen(sources),
        rules_version=rules_version,
    )
    catalog = replace(catalog, references=frozen(_sellables(catalog)))
    extras = {name: rule.build(sources[name], catalog) for name, rule in POLICIES.items() if name in sources}
    if not extras:
        return catalog
    references = dict(catalog.references)
    for name, rule in POLICIES.items():
        if rule.references and name in extras:
            for reference, item in rule.references(extras[name]).items():
                references.setdefault(reference, item)  # duplicates are reported by duplicate_references
    return replace(catalog, extras=frozen(extras), references=frozen(references))


def duplicate_references(catalog: Catalog) -> Iterator[Problem]:
    """duplicate-reference: a further rule file sells a commercial reference that something else already uses."""
    # catalog.references kept the first item of every reference (build_catalog): any other is a duplicate.
    for name, rule in POLICIES.items():
        if not rule.references or name not in catalog.extras:
            continue
        for reference, item in rule.references(catalog.extras[name]).items():
            owner = catalog.references[reference]
            if owner != item:
                yield Problem("duplicate-reference",
                              f"commercial reference {reference} is also used by {owner.rule} ({owner.where})",
                              item.where, rule=item.rule, hint="every sellable item needs its own reference")


def _sellables(catalog: Catalog) -> dict[str, Sellable]:
    """Index every commercial reference; the first wins on duplicates (the checks report them)."""
    found: dict[str, Sellable] = {}
    for product in catalog.products.values():
        for tier in product.tiers:
            for offer, reference in tier.references.items():
                found.setdefault(reference, Sellable(reference, f"{product.name} {tier.name}, {offer_text(offer)}",
                                                     "tier", product.id, offer, tier.rule, tier.where))
    for product_id, addons in catalog.addons.items():
        name = catalog.products[product_id].name if product_id in catalog.products else product_id
        for addon in addons.values():
            for offer, reference in addon.references.items():
                found.setdefault(reference, Sellable(reference, f"{name}: {addon.name}, {offer_text(offer)}",
                                                     "addon", product_id, offer, addon.rule, addon.where))
    for license in catalog.devices.values():
        for offer, reference in license.references.items():
            found.setdefault(reference, Sellable(reference, f"{license.name}, {offer_text(offer)}",
                                                 "devices", license.product, offer, license.rule, license.where))
    return found
