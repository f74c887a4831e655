"""The condition language of the rule files: named facts, comparisons, and all / any / not trees.

A condition is a mapping. Each key is either a fact name, whose value is a comparison, or one of the
combinators `all: [...]`, `any: [...]` and `not: {...}`; the keys of one mapping must all hold:

    when:
      partner.country: [FR, DE]            # one of
      configuration.license: subscription  # equal
      configuration.tier: {at_least: advanced}
      date: {before: 2027-07-01}
      addons: insulation-monitoring        # the add-on is chosen
      partner.purchasing_account: present

A comparison is a value (equal; for a set fact such as `partner.badges`: holds it), a list (one of; for a
set: holds one of them), `present` / `absent`, or a mapping of operators that must all hold: `is`, `is_not`,
`one_of`, `none_of`, `at_least`, `at_most`, `before`, `after`, `present`.

Logic has three values: a comparison on a fact the request does not give is unknown, `not` of unknown is
unknown, and a rule fires only on what is known. A requirement (a badge's unlock, a prerequisite, an
availability window, a constraint's `require`) refuses unless it is known to hold, so a missing country is
"unknown", never silently false. This module parses conditions, resolves their values against one product,
and evaluates them in plain Python (the reference the engine's compiled patterns are tested against, and the
source of each condition's "value seen, held or not" in explanations).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from engine.problem import Location, Problem, did_you_mean

COMBINATORS = ("all", "any", "not")
OPERATORS = ("is", "is_not", "one_of", "none_of", "at_least", "at_most", "before", "after", "present")
ORDERED = {"number", "version", "tier", "date"}  # the kinds at_least / at_most compare
COUNTRY = re.compile(r"^[A-Z]{2}$")
# Words product managers write for a comparison the language spells otherwise.
SYNONYMS = {"from": "at_least", "since": "at_least", "until": "at_most", "to": "at_most", "min": "at_least",
            "max": "at_most", "in": "one_of", "not_in": "none_of", "equals": "is", "eq": "is", "not": "is_not",
            "ne": "is_not", "gte": "at_least", "lte": "at_most", "gt": "after", "lt": "before",
            "absent": "present"}


def operator_hint(name: str) -> str:
    """Return the did-you-mean for an unknown comparison, with the list of comparisons."""
    listed = "comparisons: " + ", ".join(OPERATORS)
    if name in SYNONYMS:
        return f"did you mean '{SYNONYMS[name]}'? ({listed})"
    guess = did_you_mean(name, OPERATORS)
    return f"{guess} ({listed})" if guess else listed


@dataclass(frozen=True)
class Fact:
    """A named fact a condition may test: its kind, the engine field that carries it, and what it means."""

    name: str
    kind: str  # set | country | text | date | choice | number | version | tier
    field: str  # the config fact's field (for a set: the prefix of one boolean per member)
    optional: bool  # the request may leave it out: then comparisons on it are unknown
    doc: str
    choices: tuple[str, ...] = ()  # for a choice fact with fixed values


FACTS: dict[str, Fact] = {fact.name: fact for fact in (
    Fact("partner.badges", "set", "has", False, "the badges the partner holds"),
    Fact("partner.country", "country", "country", True, "the partner's country, an ISO 3166 code such as FR"),
    Fact("partner.company", "text", "company", True, "the partner's company name"),
    Fact("partner.purchasing_account", "text", "account", True, "the partner's purchasing account, if any"),
    Fact("date", "date", "date_n", False, "the quote or activation date (default: the server's date)"),
    Fact("configuration.product", "choice", "product", False, "the product id"),
    Fact("configuration.version", "version", "version_n", False, "the product version (default: the latest)"),
    Fact("configuration.license", "choice", "license", False, "the licence model",
         ("subscription", "perpetual")),
    Fact("configuration.term_months", "number", "term", False, "the subscription term in months (0: perpetual)"),
    Fact("configuration.tier", "tier", "tier", False, "the tier, compared by rank with at_least / at_most"),
    Fact("configuration.devices", "number", "devices", False, "the number of devices"),
    Fact("addons", "set", "on", False, "the add-ons chosen"),
    Fact("addons.count", "number", "n_addons", False, "how many add-ons are chosen"),
    Fact("change.kind", "choice", "change", True, "amendment or renewal (unknown outside them)",
         ("amendment", "renewal")),
    Fact("change.from_tier", "tier", "from_tier", True, "the tier before an amendment or renewal"),
    Fact("change.to_tier", "tier", "to_tier", True, "the tier after an amendment or renewal"),
    Fact("change.month", "number", "month", True, "the month of the term an amendment falls in (1 = the first)"),
    Fact("change.months_left", "number", "months_left", True, "the months an amendment charges"),
)}
PARTNER_WORDS = {
    "partner.badges": "your badges", "partner.country": "your country", "partner.company": "your company",
    "partner.purchasing_account": "your purchasing account", "date": "the date",
    "configuration.product": "the product", "configuration.version": "the version",
    "configuration.license": "the licence model", "configuration.term_months": "the term in months",
    "configuration.tier": "the tier", "configuration.tier_written": "the tier as written",
    "configuration.devices": "the number of devices", "addons": "the add-ons", "addons.count": "the number of add-ons",
    "change.kind": "the change", "change.from_tier": "the tier before", "change.to_tier": "the new tier",
    "change.month": "the month of the term", "change.months_left": "the months left"}
ADDON_QUANTITY = re.compile(r"^addon\.([a-z0-9]+(?:-[a-z0-9]+)*)\.quantity$")
# Facts the compiler tests that no product manager writes (a tier's former name as the request spelt it).
INTERNAL = {"configuration.tier_written": Fact("configuration.tier_written", "text", "tier_written", False,
                                                "the tier as the request wrote it")}


@functools.cache
def fact_named(name: str) -> Fact | None:
    """Return the fact a condition names, including `addon.<id>.quantity`, or None."""
    if name in FACTS:
        return FACTS[name]
    if name in INTERNAL:
        return INTERNAL[name]
    match = ADDON_QUANTITY.match(name)
    if match:
        return Fact(name, "number", "q_" + match.group(1).replace("-", "_"), False,
                    f"the quantity of add-on {match.group(1)} (0 when not chosen)")
    return None


# ---------------------------------------------------------------------------------------------------------
# The tree


@dataclass(frozen=True)
class Test:
    """One comparison of one fact: `op` is an operator name, `value` as written (resolve() types it)."""

    fact: str
    op: str
    value: Any
    where: Location
    engine: Any = field(default=None, compare=False)  # the value as compared (resolve_tree sets it)
    where_fact: Location | None = field(default=None, compare=False)  # where the fact's name is written

    @functools.cached_property
    def text(self) -> str:
        """Return the comparison as a product manager would read it."""
        return self.reads(self.fact)

    @functools.cached_property
    def plain(self) -> str:
        """Return the comparison in a partner's words (no fact names)."""
        quantity = ADDON_QUANTITY.match(self.fact)
        name = PARTNER_WORDS.get(self.fact) or (f"the quantity of {quantity.group(1)}" if quantity else self.fact)
        return self.reads(name)

    def reads(self, name: str) -> str:
        """Return the comparison with its fact called NAME."""
        value = self.value
        if isinstance(value, (list, tuple)):
            value = "[" + ", ".join(str(item) for item in value) + "]"
        elif isinstance(value, bool):
            value = str(value).lower()
        words = {"is": "is", "is_not": "is not", "one_of": "is one of", "none_of": "is none of",
                 "at_least": "is at least", "at_most": "is at most", "before": "is before", "after": "is after"}
        if FACTS.get(self.fact, Fact("", "", "", False, "")).kind == "set" or self.fact == "addons":
            words.update({"is": "include", "is_not": "do not include", "one_of": "include one of",
                          "none_of": "include none of"})
        if self.op == "present" and name == self.fact:
            return f"{name} is {'present' if self.value else 'absent'}"
        if self.op == "present":
            return f"{name} is {'given' if self.value else 'not given'}"
        return f"{name} {words[self.op]} {value}"


@dataclass(frozen=True)
class All:
    """Every part holds."""

    parts: tuple
    where: Location


@dataclass(frozen=True)
class Any_:
    """At least one part holds."""

    parts: tuple
    where: Location


@dataclass(frozen=True)
class Not:
    """The part does not hold (unknown stays unknown)."""

    part: Any
    where: Location


Node = Test | All | Any_ | Not


def conjunction(parts, where: Location) -> Node:
    """Return the conjunction of parts, unwrapped when there is one."""
    parts = tuple(parts)
    return parts[0] if len(parts) == 1 else All(parts, where)


def disjunction(parts, where: Location) -> Node:
    """Return the disjunction of parts, unwrapped when there is one."""
    parts = tuple(parts)
    return parts[0] if len(parts) == 1 else Any_(parts, where)


def leaves(node: Node) -> Iterator[Test]:
    """Yield every comparison of a tree, left to right."""
    if isinstance(node, Test):
        yield node
    elif isinstance(node, Not):
        yield from leaves(node.part)
    else:
        for part in node.parts:
            yield from leaves(part)


def text(node: Node) -> str:
    """Return a tree as one line of text."""
    if isinstance(node, Test):
        return node.text
    if isinstance(node, Not):
        return f"not ({text(node.part)})"
    joiner = " and " if isinstance(node, All) else " or "
    inner = joiner.join(text(part) if isinstance(part, (Test, Not)) else f"({text(part)})" for part in node.parts)
    return inner


# ---------------------------------------------------------------------------------------------------------
# Reading a condition from a rule file (its shape is already checked by condition.schema.json)


def parse(source, path: tuple) -> Node:
    """Build the tree of the condition written at PATH of a schema-valid source."""
    data = source.data
    for key in path:
        data = data[key]
    return _parse(source, path, data)


def _parse(source, path: tuple, data: dict) -> Node:
    parts = []
    for key, value in data.items():
        at = path + (key,)
        if key == "all":
            parts.append(conjunction([_parse(source, at + (index,), item) for index, item in enumerate(value)],
                                     source.where_key(at)))
        elif key == "any":
            parts.append(disjunction([_parse(source, at + (index,), item) for index, item in enumerate(value)],
                                     source.where_key(at)))
        elif key == "not":
            parts.append(Not(_parse(source, at, value), source.where_key(at)))
        else:
            parts.extend(_comparisons(source, at, key, value))
    return conjunction(parts, source.where(path))


def _comparisons(source, at: tuple, fact: str, value) -> list[Test]:
    named = source.where_key(at)
    if isinstance(value, dict):
        return [Test(fact, op, tuple(operand) if isinstance(operand, list) else operand, source.where(at + (op,)),
                     where_fact=named) for op, operand in value.items()]
    if value == "present" or value == "absent":
        return [Test(fact, "present", value == "present", source.where(at), where_fact=named)]
    if isinstance(value, list):
        return [Test(fact, "one_of", tuple(value), source.where(at), where_fact=named)]
    return [Test(fact, "is", value, source.where(at), where_fact=named)]


# ---------------------------------------------------------------------------------------------------------
# Resolving values against a product: what the engine compares, or a located problem


@dataclass(frozen=True)
class Scope:
    """What a condition's values are checked against: the catalogue's badges, and one product."""

    badges: tuple[str, ...]
    product: Any  # catalogue.model.Product, or None for a condition outside any product
    addons: tuple[str, ...]
    products: tuple[str, ...]
    version_number: Any  # version string -> the engine's integer
    other_tiers: tuple = ()  # (product id, its tier ids) of every product, to say where a tier belongs


def resolve(test: Test, scope: Scope) -> tuple[Any, list[Problem]]:
    """Return the engine value of a comparison (a list for one_of / none_of) and the problems found."""
    fact = fact_named(test.fact)
    if fact is None:
        names = list(FACTS) + [f"addon.{addon}.quantity" for addon in scope.addons]
        return None, [Problem("unknown-fact", f"no fact is called '{test.fact}'", test.where_fact or test.where,
                              hint=did_you_mean(test.fact, names) or "facts: " + ", ".join(FACTS))]
    quantity = ADDON_QUANTITY.match(test.fact)
    if quantity and quantity.group(1) not in scope.addons:
        names = [f"addon.{addon}.quantity" for addon in scope.addons]
        owner = f" of {scope.product.id}" if scope.product else ""
        return None, [Problem("unknown-fact", f"'{quantity.group(1)}' is not an add-on{owner}",
                              test.where_fact or test.where,
                              hint=did_you_mean(test.fact, names) or f"add-ons{owner}: " + ", ".join(scope.addons))]
    if test.op not in OPERATORS:
        return None, [Problem("unknown-operator", f"'{test.op}' is not a comparison", test.where,
                              hint=operator_hint(test.op))]
    if test.op == "present":
        if not isinstance(test.value, bool):
            return None, [Problem("bad-value", "present takes true or false", test.where,
                                  hint="write present or absent")]
        return test.value, []
    if test.op in ("at_least", "at_most", "before", "after") and fact.kind not in ORDERED:
        return None, [Problem("type-mismatch", f"{test.fact} is a {_kind_text(fact)}: it has no order for "
                              f"{test.op}", test.where, hint="compare it with is, one_of or none_of")]
    if test.op in ("before", "after") and fact.kind != "date":
        return None, [Problem("type-mismatch", f"{test.op} compares dates; {test.fact} is a {_kind_text(fact)}",
                              test.where, hint="use at_least or at_most")]
    many = test.op in ("one_of", "none_of")
    values = test.value if many else [test.value]
    if many and not isinstance(values, (list, tuple)):
        values = [values]
    resolved, problems = [], []
    for value in values:
        engine_value, problem = _resolve_value(fact, test, value, scope)
        if problem:
            problems.append(problem)
        resolved.append(engine_value)
    if test.op in ("at_least", "at_most", "before", "after") and fact.kind == "tier" and not problems:
        resolved = [scope.product.tier(resolved[0]).rank]
    return (resolved if many else resolved[0]), problems


def _kind_text(fact: Fact) -> str:
    return {"set": "set", "country": "country", "text": "text", "date": "date", "choice": "choice",
            "number": "number", "version": "version", "tier": "tier"}[fact.kind]


def _resolve_value(fact: Fact, test: Test, value, scope: Scope):
    """Return (engine value, problem or None) for one value compared with a fact."""
    product = scope.product
    where = test.where
    if fact.kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, Problem("type-mismatch", f"{test.fact} is a number, not {value!r}", where,
                                 hint="write a number such as 2")
        return value, None
    if fact.kind == "date":
        if isinstance(value, dt.datetime) or not isinstance(value, (dt.date, str)):
            return None, Problem("type-mismatch", f"{test.fact} is a date, not {value!r}", where,
                                 hint="write a date as YYYY-MM-DD, e.g. 2025-06-01")
        try:
            day = value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
        except ValueError:
            return None, Problem("type-mismatch", f"'{value}' is not a date", where,
                                 hint="write a date as YYYY-MM-DD, e.g. 2025-06-01")
        return day.toordinal(), None
    if not isinstance(value, str):
        return None, Problem("type-mismatch", f"{test.fact} is a {_kind_text(fact)}, not {value!r}", where,
                             hint="write an ISO 3166 country code, e.g. FR" if fact.kind == "country"
                             else "quote it if it is a name")
    if fact.kind == "country":
        if not COUNTRY.match(value):
            capitals = COUNTRY.match(value.upper())
            return None, Problem("bad-value", f"'{value}' is not a country code", where,
                                 hint=f"write {value.upper()}: country codes are in capitals" if capitals
                                 else "write an ISO 3166 code in capitals, e.g. FR, US")
        return value, None
    if fact.name == "partner.badges":
        return _member(value, scope.badges, "badge", where)
    if fact.name == "addons":
        return _member(value, scope.addons, "add-on" + (f" of {product.id}" if product else ""), where)
    if fact.name == "configuration.product":
        return _member(value, scope.products, "product", where)
    if fact.choices:
        return _member(value, fact.choices, f"value of {fact.name}", where)
    if fact.kind == "version":
        if product is None:
            return None, Problem("no-product", f"{test.fact} needs the rule to name its product", where)
        found, problem = _member(value, product.versions, f"version of {product.id}", where)
        return (scope.version_number(found) if found else None), problem
    if fact.kind == "tier":
        if product is None:
            return None, Problem("no-product", f"{test.fact} needs the rule to name its product", where)
        found, problem = _member(value, tuple(tier.id for tier in product.tiers), f"tier of {product.id}", where)
        if problem:
            former = next((tier.id for tier in product.tiers if value in tier.former_names), None)
            owners = [owner for owner, tiers in scope.other_tiers if value in tiers and owner != product.id]
            if former:
                problem = replace(problem, message=f"{problem.message}: it is the former name of {former}",
                                  hint=f"write {former}; requests naming {value} are read as {former}")
            elif owners:
                problem = replace(problem, message=f"{problem.message} (it is a tier of {', '.join(owners)})")
        return found, problem
    return value, None


def _member(value: str, choices, what: str, where: Location):
    if value in choices:
        return value, None
    noun, _, rest = what.partition(" ")
    listed = f"{noun}s{' ' + rest if rest else ''}: " + ", ".join(choices)
    article = "an" if what[0] in "aeiou" else "a"
    return None, Problem("unknown-value", f"'{value}' is not {article} {what}", where,
                         hint=did_you_mean(value, choices) or listed)


# ---------------------------------------------------------------------------------------------------------
# Resolving a whole tree, and the reference evaluator: three-valued, over facts by name

RANK = "#rank"  # facts[name + RANK]: the rank of the tier a tier fact names


def resolve_tree(node: Node, scope: Scope, problems: list[Problem]) -> Node:
    """Return the tree with every comparison's engine value set; add what is wrong to PROBLEMS."""
    if isinstance(node, Test):
        value, found = resolve(node, scope)
        problems.extend(found)
        return replace(node, engine=value)
    if isinstance(node, Not):
        return Not(resolve_tree(node.part, scope, problems), node.where)
    return type(node)(tuple(resolve_tree(part, scope, problems) for part in node.parts), node.where)


def holds(test: Test, facts: dict) -> bool | None:
    """Return whether a resolved comparison holds on FACTS (engine values by fact name); None when unknown."""
    value = test.engine
    seen = facts.get(test.fact)
    if seen is None and ADDON_QUANTITY.match(test.fact):
        seen = 0  # an add-on not chosen has quantity 0, as the engine's fact says
    if test.op == "present":
        return (seen is not None) == value
    if seen is None:
        return None
    if fact_named(test.fact).kind == "set":
        members = seen
        if test.op == "is":
            return value in members
        if test.op == "is_not":
            return value not in members
        hit = any(item in members for item in value)
        return hit if test.op == "one_of" else not hit
    if test.op in ("at_least", "at_most") and fact_named(test.fact).kind == "tier":
        seen = facts.get(test.fact + RANK)
    if test.op == "is":
        return seen == value
    if test.op == "is_not":
        return seen != value
    if test.op == "one_of":
        return seen in value
    if test.op == "none_of":
        return seen not in value
    if test.op == "at_least":
        return seen >= value
    if test.op == "at_most":
        return seen <= value
    return seen < value if test.op == "before" else seen > value


def evaluate(node: Node, facts: dict) -> bool | None:
    """Evaluate a resolved tree on FACTS; None is unknown (Kleene logic)."""
    if isinstance(node, Test):
        return holds(node, facts)
    if isinstance(node, Not):
        inner = evaluate(node.part, facts)
        return None if inner is None else not inner
    results = [evaluate(part, facts) for part in node.parts]
    if isinstance(node, All):
        return False if False in results else (None if None in results else True)
    return True if True in results else (None if None in results else False)
