"""Properties of the condition language: the engine patterns agree with the plain-Python reference evaluator.

Random condition trees (all / any / not over every fact kind, each optional fact sometimes missing) are
compiled in the four senses by engine.inference.patterns and registered, many at a time, in a real durable_rules
session; random facts are flattened by the production engine_fact() and asserted. Each rule fires exactly when
catalogue.conditions.evaluate says its sense holds: TRUE iff True, FALSE iff False, NOT_TRUE iff not True,
NOT_FALSE iff not False (unknown being None).
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.catalogue.conditions import FACTS, RANK, All, Any_, Not, evaluate, resolve_tree, text
from engine.catalogue.conditions import Test as Comparison  # not "Test...": pytest would try to collect it
from engine.catalogue.load import load_catalog
from engine.catalogue.schema import BUNDLED_RULES
from engine.inference.compile import FactFields, scope_of, version_number
from engine.inference.evaluate import engine_fact
from engine.inference.patterns import FALSE, NOT_FALSE, NOT_TRUE, TRUE, both, member_field, pattern
from engine.inference.session import RuleSession, check_limits, rule_limits
from engine.problem import Location

SENSES = (TRUE, FALSE, NOT_TRUE, NOT_FALSE)
WHERE = Location("<property>", 1, 1)
COUNTRIES = ("FR", "DE", "US", "GB")
COMPANIES = ("Acme", "Initech")
ACCOUNTS = ("PA-1", "PA-2")
DAYS = tuple(dt.date(2025, 1, 1) + dt.timedelta(days=offset) for offset in range(5))
NUMBERS = {"configuration.term_months": (0, 12, 36), "configuration.devices": (0, 50, 100, 101),
           "addons.count": (0, 1, 2, 3), "change.month": (1, 2, 12), "change.months_left": (0, 1, 11)}
CATALOG = load_catalog(BUNDLED_RULES)
PRODUCT = CATALOG.products["epo"]  # three tiers, three versions, three add-ons: every kind has choices
SCOPE = scope_of(CATALOG, PRODUCT)
ADDONS = tuple(CATALOG.addons["epo"])
TIERS = tuple(tier.id for tier in PRODUCT.tiers)
# The fields engine_fact() flattens set facts into: every badge and every add-on of the product.
FIELDS = FactFields(tuple((member_field("has", badge), badge) for badge in CATALOG.badges),
                    tuple((member_field("on", addon), member_field("q", addon), addon) for addon in ADDONS))


def written_values(name: str) -> tuple:
    """Return the values a condition may compare fact NAME with, as a product manager writes them."""
    kind = "number" if name.startswith("addon.") else FACTS[name].kind
    if name == "partner.badges":
        return tuple(CATALOG.badges)
    if name == "addons":
        return ADDONS
    if name == "configuration.product":
        return tuple(CATALOG.products)
    if kind == "number":
        return NUMBERS.get(name, (0, 1, 2))
    return {"country": COUNTRIES, "date": DAYS, "version": PRODUCT.versions, "tier": TIERS,
            "choice": FACTS[name].choices}.get(kind) or (COMPANIES if name == "partner.company" else ACCOUNTS)


FACT_NAMES = tuple(FACTS) + tuple(f"addon.{addon}.quantity" for addon in ADDONS)


def operators(name: str) -> tuple[str, ...]:
    """Return the comparisons that resolve on fact NAME."""
    kind = "number" if name.startswith("addon.") else FACTS[name].kind
    found = ("is", "is_not", "one_of", "none_of", "present")
    if kind in ("number", "version", "tier", "date"):
        found += ("at_least", "at_most")
    if kind == "date":
        found += ("before", "after")
    return found


@st.composite
def comparisons(draw) -> Comparison:
    """Draw one comparison of any fact with any operator it takes, resolved against EPO."""
    name = draw(st.sampled_from(FACT_NAMES))
    op = draw(st.sampled_from(operators(name)))
    values = written_values(name)
    if op == "present":
        value = draw(st.booleans())
    elif op in ("one_of", "none_of"):
        value = tuple(draw(st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True)))
    else:
        value = draw(st.sampled_from(values))
    problems: list = []
    resolved = resolve_tree(Comparison(name, op, value, WHERE), SCOPE, problems)
    assert not problems, problems
    return resolved


def trees(depth: int):
    """Condition trees at most DEPTH combinators deep (empty all / any included: always / never)."""
    if depth == 0:
        return comparisons()
    inner = trees(depth - 1)
    parts = st.lists(inner, min_size=0, max_size=3).map(tuple)
    return st.one_of(comparisons(), st.builds(All, parts, st.just(WHERE)), st.builds(Any_, parts, st.just(WHERE)),
                     st.builds(Not, inner, st.just(WHERE)))


def maybe(values) -> st.SearchStrategy:
    """A value of an optional fact, or None: the request leaves it out."""
    return st.none() | st.sampled_from(values)


@st.composite
def named_facts(draw) -> dict:
    """Draw the facts of a request by name, as evaluate.request_facts() names them (engine values)."""
    tier = PRODUCT.tier(draw(st.sampled_from(TIERS)))
    chosen = frozenset(draw(st.lists(st.sampled_from(ADDONS), unique=True)))
    facts = {
        "partner.badges": frozenset(draw(st.lists(st.sampled_from(tuple(CATALOG.badges)), unique=True))),
        "partner.country": draw(maybe(COUNTRIES)),
        "partner.company": draw(maybe(COMPANIES)),
        "partner.purchasing_account": draw(maybe(ACCOUNTS)),
        "date": draw(st.sampled_from(DAYS)).toordinal(),
        "configuration.product": draw(st.sampled_from(tuple(CATALOG.products))),
        "configuration.version": version_number(draw(st.sampled_from(PRODUCT.versions))),
        "configuration.license": draw(st.sampled_from(FACTS["configuration.license"].choices)),
        "configuration.term_months": draw(st.sampled_from(NUMBERS["configuration.term_months"])),
        "configuration.tier": tier.id,
        "configuration.tier" + RANK: tier.rank,
        "configuration.devices": draw(st.sampled_from(NUMBERS["configuration.devices"])),
        "addons": chosen,
        "addons.count": len(chosen),
        "change.kind": draw(maybe(FACTS["change.kind"].choices)),
        "change.month": draw(maybe(NUMBERS["change.month"])),
        "change.months_left": draw(maybe(NUMBERS["change.months_left"])),
    }
    for addon in ADDONS:  # "0 when not chosen"
        facts[f"addon.{addon}.quantity"] = draw(st.sampled_from((1, 2))) if addon in chosen else 0
    for name in ("change.from_tier", "change.to_tier"):
        moved = draw(maybe(TIERS))
        facts[name] = moved
        facts[name + RANK] = PRODUCT.tier(moved).rank if moved else None
    return facts


def expected(verdict: bool | None, sense: str) -> bool:
    """Whether a rule compiled in SENSE fires when the reference evaluator says VERDICT."""
    return {TRUE: verdict is True, FALSE: verdict is False, NOT_TRUE: verdict is not True,
            NOT_FALSE: verdict is not False}[sense]


def record(key: str):
    """The action of one test rule: note that it fired."""
    def fired(c) -> None:
        c.scratch.append(key)
    return fired


def rule_dicts(tree_list) -> tuple[dict[str, dict], set[str]]:
    """Return the engine rules of every tree in every sense, as compile.engine_rule() shapes them, and the names
    of those too intricate for the engine (rule_limits: the compiler refuses them, located)."""
    rules, refused = {}, set()
    for index, tree in enumerate(tree_list):
        for sense in SENSES:
            spec = both([{"t": "config"}, pattern(tree, sense)])  # a `t` test keeps a constant a pattern
            if spec is False:
                continue
            rule = {"all": [{"c": spec if list(spec) == ["$and"] else {"$and": [spec]}}],
                    "run": record(f"{index}/{sense}")}
            if rule_limits(rule):
                refused.add(f"{index}/{sense}")
            else:
                rules[f"{index}/{sense}"] = rule
    return rules, refused


def fits(rules: dict[str, dict]) -> list[dict[str, dict]]:
    """Split rules into rulesets the engine can hold (check_limits: thresholds, sibling tests)."""
    if not check_limits(rules):
        return [rules]
    items = list(rules.items())
    assert len(items) > 1, check_limits(rules)
    half = len(items) // 2
    return fits(dict(items[:half])) + fits(dict(items[half:]))


_NAMES = itertools.count(1)


def fired_rules(engine: RuleSession, tree_list, fact_list) -> tuple[list[set[str]], set[str]]:
    """Register the trees in the four senses, assert each fact in a fresh session; return what fired for each,
    and the rules the engine could not hold."""
    rules, refused = rule_dicts(tree_list)
    fired: list[set[str]] = [set() for _ in fact_list]
    for part in (fits(rules) if rules else []):
        name = f"properties-{next(_NAMES)}"
        engine.register(name, part)
        try:
            for position, facts in enumerate(fact_list):
                seen: list[str] = []
                engine.run(name, [engine_fact(FIELDS, facts)], seen)
                fired[position].update(seen)
        finally:
            engine.unregister(name)
    return fired, refused


def disagreements(tree_list, fact_list, fired, refused=frozenset()) -> list[str]:
    """Describe every (tree, facts, sense) where the engine and the reference evaluator disagree."""
    found = []
    for facts, hits in zip(fact_list, fired):
        for index, tree in enumerate(tree_list):
            verdict = evaluate(tree, facts)
            for sense in SENSES:
                if f"{index}/{sense}" in refused:
                    continue
                if (f"{index}/{sense}" in hits) != expected(verdict, sense):
                    found.append(f"{sense} of [{text(tree)}] on {facts}: reference {verdict}, engine "
                                 f"{'fired' if f'{index}/{sense}' in hits else 'did not fire'}; "
                                 f"pattern {pattern(tree, sense)}")
    return found


@pytest.fixture(scope="module")
def engine():
    """One real engine for the module; every ruleset is unregistered after its example."""
    return RuleSession()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tree_list=st.lists(trees(4), min_size=1, max_size=10),
       fact_list=st.lists(named_facts(), min_size=1, max_size=12))
def test_compiled_trees_agree_with_the_reference_evaluator(engine, tree_list, fact_list):
    """Each tree in each sense fires on exactly the facts the reference evaluator says it should."""
    fired, refused = fired_rules(engine, tree_list, fact_list)
    assert disagreements(tree_list, fact_list, fired, refused) == []
