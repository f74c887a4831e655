"""The licence-update guidance of rules/guidance.yaml: model, build, checks, rule ids."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Iterator, Mapping

from engine.catalogue.model import Catalog, extra_of, frozen
from engine.problem import Location, Problem, did_you_mean
from engine.catalogue.source import Source


FILE = "guidance.yaml"
SCHEMA = "guidance.schema.json"
MODES = ("online", "offline")
EVENTS = ("activation", "amendment", "renewal")
PLACEHOLDERS = ("product_name", "version", "tool", "activation_id")
NO_ACTIVATION_ID = "shown in Companion"
# What each procedure means in each mode, in the partner's words.
SUMMARIES = {("activate", "online"): "activate the licence online",
             ("activate", "offline"): "activate the licence offline (request file, response file)",
             ("update", "online"): "refresh the licence",
             ("update", "offline"): "return the licence and activate it again"}


@dataclass(frozen=True)
class Guide:
    """The update steps of one product, for some versions (or, without versions, its default)."""

    id: str
    product: str
    versions: tuple[str, ...]
    tool: str
    sample: bool
    steps: Mapping[str, Mapping[str, tuple[str, ...]]]  # procedure -> mode -> steps
    rule: str
    where: Location
    where_product: Location
    version_spots: tuple[Location, ...]
    step_spots: Mapping[tuple[str, str, int], Location]


@dataclass(frozen=True)
class Guidance:
    """The model of rules/guidance.yaml."""

    events: Mapping[str, str]  # event -> procedure
    guides: tuple[Guide, ...]
    file: str

    def guide_for(self, product: str, version: str) -> Guide | None:
        """Return the guide that lists this version, else the product's default, else None."""
        guides = [guide for guide in self.guides if guide.product == product]
        return next((guide for guide in guides if version in guide.versions), None) or \
            next((guide for guide in guides if not guide.versions), None)


def build(source: Source, catalog: Catalog) -> Guidance:
    """Build the guidance model from a schema-valid guidance.yaml."""
    guides = []
    for index, item in enumerate(source.data["guides"]):
        path = ("guides", index)
        steps = {procedure: frozen({mode: tuple(item["steps"][procedure][mode]) for mode in MODES})
                 for procedure in ("activate", "update")}
        step_spots = {(procedure, mode, position): source.where(path + ("steps", procedure, mode, position))
                      for procedure in steps for mode in MODES for position in range(len(steps[procedure][mode]))}
        guides.append(Guide(
            item["id"], item["product"], tuple(item.get("versions", ())), item["tool"], item.get("sample", False),
            frozen(steps), f"guidance.{item['product']}.{item['id']}", source.where(path + ("id",)),
            source.where(path + ("product",)),
            tuple(source.where(path + ("versions", position)) for position in range(len(item.get("versions", ())))),
            frozen(step_spots)))
    return Guidance(frozen(dict(source.data["events"])), tuple(guides), source.file)


def check(catalog: Catalog) -> Iterator[Problem]:
    """Check guides against tiers.yaml: known products and versions, one guide per version, every version guided.

    Passing: a guide `{id: default, product: pme, ...}` covers every PME version.
    Failing: `product: epo, versions: ["2023"]` -> error[unknown-version] guidance.epo.x: ... did you mean '2022'?
    """
    guidance = catalog.extras.get(FILE)
    if guidance is None:
        return
    rules_seen: dict[str, Location] = {}
    claimed: dict[tuple[str, str], Guide] = {}
    defaults: dict[str, Guide] = {}
    for guide in guidance.guides:
        if guide.rule in rules_seen:
            yield Problem("duplicate-id", f"guide id '{guide.id}' is used twice for {guide.product} (first at line "
                          f"{rules_seen[guide.rule].line})", guide.where, rule=guide.rule, hint="rename one")
        rules_seen.setdefault(guide.rule, guide.where)
        product = catalog.products.get(guide.product)
        if product is None:
            yield Problem("unknown-ref", f"guide is for product '{guide.product}', which is not defined",
                          guide.where_product, rule=guide.rule,
                          hint=did_you_mean(guide.product, catalog.products) or "products: " + ", ".join(catalog.products))
            continue
        if not guide.versions:
            if guide.product in defaults:
                yield Problem("duplicate-default", f"{guide.product} has two default guides (first: "
                              f"{defaults[guide.product].rule})", guide.where, rule=guide.rule,
                              hint="give one of them `versions`")
            defaults.setdefault(guide.product, guide)
        for version, where in zip(guide.versions, guide.version_spots):
            if version not in product.versions:
                yield Problem("unknown-version", f"{product.id} has no version '{version}'", where, rule=guide.rule,
                              hint=did_you_mean(version, product.versions) or "versions: " + ", ".join(product.versions))
            elif (product.id, version) in claimed:
                yield Problem("duplicate-version", f"{product.id} {version} already has a guide "
                              f"({claimed[product.id, version].rule})", where, rule=guide.rule,
                              hint="list each version in one guide")
            else:
                claimed[product.id, version] = guide
        for (procedure, mode, position), where in guide.step_spots.items():
            yield from _placeholder_problems(guide.steps[procedure][mode][position], where, guide.rule)
    for product in catalog.products.values():
        for position, version in enumerate(product.versions):
            if (product.id, version) not in claimed and product.id not in defaults:
                yield Problem("no-guidance", f"{product.id} {version} has no licence-update guidance",
                              product.spots.get(f"versions.{position}", product.where), rule=product.rule,
                              hint=f"add a guide for {product.id} in {FILE} (without `versions` it covers every version)")
        default = defaults.get(product.id)
        if default and all((product.id, version) in claimed for version in product.versions):
            yield Problem("unreachable", f"every {product.id} version has its own guide, so the default is never used",
                          default.where, rule=default.rule, severity="warning", hint="remove the default guide")


def _placeholder_problems(text: str, where: Location, rule: str) -> Iterator[Problem]:
    """Yield a problem for each placeholder of a step that is broken, unknown or more than a plain {name}."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(text)
                  if name is not None]
    except ValueError as error:
        yield Problem("bad-placeholder", f"step text has a broken placeholder: {error}", where, rule=rule,
                      hint="write {{ and }} for literal braces")
        return
    for name, spec, conversion in fields:
        if spec or conversion:  # str.format would run them: `!z` raises, `:>300000000` pads 300 MB
            written = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
            yield Problem("bad-placeholder", f"step uses {written}; a placeholder is a plain {{name}}, without a "
                          "conversion (!) or format (:)", where, rule=rule,
                          hint="write {" + name + "}, or {{ and }} for literal braces")
        elif name not in PLACEHOLDERS:
            yield Problem("unknown-placeholder", f"step uses {{{name}}}, which is not a placeholder", where, rule=rule,
                          hint=did_you_mean(name, PLACEHOLDERS) or "placeholders: " + ", ".join(PLACEHOLDERS))


def rules(guidance: Guidance) -> dict[str, Location]:
    """Return every rule id of guidance.yaml with where it is written."""
    return {guide.rule: guide.where for guide in guidance.guides}


def guidance_of(catalog: Catalog) -> Guidance:
    """Return the guidance model, or raise CompanionError when the rules have no guidance.yaml."""
    return extra_of(catalog, FILE, SCHEMA, "no-guidance", "licence-update guidance")
