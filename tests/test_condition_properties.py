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
import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from engine.catalogue.conditions import FACTS, RANK, All, Any_, Not, evaluate, resolve_tree, text
from engine.catalogue.conditions import Test as Comparison  # not "Test...": pytest would try to collect it
from engine.catalogue.load import load_catalog
from engine.catalogue.schema import BUNDLED_RULES
from engine.inference.compile import FactFields, compile_catalog, scope_of, version_number
from engine.inference.evaluate import engine_fact
from engine.inference.evaluate import evaluate as evaluate_request
from engine.inference.request import request_from_data
from engine.problem import CompanionError
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


# ---------------------------------------------------------------------------------------------------------
# End to end: conditions written as YAML in a small catalogue, requests through engine.evaluate

SMALL_RULES = {
    "badges.yaml": """\
badges:
  - id: seller
    name: Seller
    unlocks:
      - product: box
  - id: expert
    name: Expert
    unlocks:
      - product: box
""",
    "tiers.yaml": """\
products:
  - id: box
    name: Box
    versions: ["1.0", "2.0", "2.1"]
    licenses:
      subscription:
        terms: [12]
      perpetual: {}
    tiers:
      - id: basic
        name: Basic
        devices: {included: 1000, max: 1000}
        references: {subscription-12: BOX-B-12, perpetual: BOX-B-P}
      - id: pro
        name: Pro
        devices: {included: 1000, max: 1000}
        references: {subscription-12: BOX-P-12, perpetual: BOX-P-P}
    upgrades:
      - {from: basic, to: pro}
""",
}
SMALL = {"badges": ("seller", "expert"), "addons": ("alpha", "beta"), "versions": ("1.0", "2.0", "2.1"),
         "tiers": ("basic", "pro")}
# Facts of a box request and the values conditions on them compare with, as written in YAML.
WRITTEN = {
    "partner.badges": SMALL["badges"], "partner.country": COUNTRIES[:3], "partner.company": COMPANIES,
    "partner.purchasing_account": ACCOUNTS, "date": DAYS[:3], "configuration.version": SMALL["versions"],
    "configuration.license": ("subscription", "perpetual"), "configuration.tier": SMALL["tiers"],
    "configuration.devices": (0, 5, 20), "addons": SMALL["addons"], "addons.count": (0, 1, 2),
    "addon.alpha.quantity": (0, 1, 2),
}


@st.composite
def written_comparisons(draw) -> tuple[dict, object]:
    """Draw one comparison as a product manager writes it in YAML, and the tree it means (unresolved)."""
    name = draw(st.sampled_from(tuple(WRITTEN)))
    values = WRITTEN[name]
    op = draw(st.sampled_from(operators(name) + ("short-is", "short-one-of", "short-present")))
    if op == "short-present":
        present = draw(st.booleans())
        return {name: "present" if present else "absent"}, Comparison(name, "present", present, WHERE)
    if op in ("one_of", "none_of", "short-one-of"):
        value = draw(st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True))
    elif op == "present":
        value = draw(st.booleans())
    else:
        value = draw(st.sampled_from(values))
    if op.startswith("short-"):
        meant = "is" if op == "short-is" else "one_of"
        return {name: value}, Comparison(name, meant, tuple(value) if isinstance(value, list) else value, WHERE)
    return {name: {op: value}}, Comparison(name, op, tuple(value) if isinstance(value, list) else value, WHERE)


def written_trees(depth: int):
    """Conditions as YAML data and the trees they mean; a mapping of several keys means all of them."""
    if depth == 0:
        return written_comparisons()
    inner = written_trees(depth - 1)
    parts = st.lists(inner, min_size=1, max_size=3)
    return st.one_of(
        written_comparisons(),
        parts.map(lambda items: ({"all": [data for data, _ in items]}, All(tuple(t for _, t in items), WHERE))),
        parts.map(lambda items: ({"any": [data for data, _ in items]}, Any_(tuple(t for _, t in items), WHERE))),
        inner.map(lambda item: ({"not": item[0]}, Not(item[1], WHERE))),
        parts.filter(lambda items: len({key for data, _ in items for key in data}) == sum(map(len, (d for d, _ in items))))
        .map(lambda items: ({key: value for data, _ in items for key, value in data.items()},
                            All(tuple(t for _, t in items), WHERE))),
    )


@st.composite
def box_requests(draw) -> dict:
    """Draw a well-formed request for the box, sometimes leaving out the optional partner facts and the date."""
    partner = {"badges": ["seller"] + draw(st.lists(st.just("expert"), max_size=1))}
    for key, values in (("country", COUNTRIES[:3]), ("company", COMPANIES), ("purchasing_account", ACCOUNTS)):
        value = draw(maybe(values))
        if value is not None:
            partner[key] = value
    license = draw(st.sampled_from(("subscription", "perpetual")))
    configuration = {"product": "box", "license": license, "tier": draw(st.sampled_from(SMALL["tiers"])),
                     "devices": draw(st.sampled_from((0, 5, 20))),
                     "addons": [{"id": addon, "quantity": draw(st.sampled_from((1, 2)))}
                                for addon in draw(st.lists(st.sampled_from(SMALL["addons"]), unique=True))]}
    if license == "subscription":
        configuration["term_months"] = 12
    version = draw(maybe(SMALL["versions"]))
    if version is not None:
        configuration["version"] = version
    request = {"partner": partner, "configuration": configuration}
    day = draw(maybe(DAYS[:3]))
    if day is not None:
        request["date"] = str(day)
    return request


class Written(yaml.SafeDumper):
    """Dump every value in full: the rule files refuse YAML anchors and aliases."""

    def ignore_aliases(self, data) -> bool:
        return True


def box_rules(directory, whens, requires, notices, alpha_when) -> None:
    """Write the small catalogue: add-on alpha sold from 2.0 when ALPHA_WHEN holds, and constraints.yaml."""
    for name, text_ in SMALL_RULES.items():
        (directory / name).write_text(text_)
    addons = [{"id": "alpha", "product": "box", "name": "Alpha", "when": alpha_when, "requires": {"min_version": "2.0"},
               "references": {"subscription-12": "BOX-A-12", "perpetual": "BOX-A-P"}},
              {"id": "beta", "product": "box", "name": "Beta",
               "references": {"subscription-12": "BOX-Z-12", "perpetual": "BOX-Z-P"}}]
    (directory / "addons.yaml").write_text(yaml.dump({"addons": addons}, Dumper=Written, sort_keys=False))
    further = {
        # never met (no request names that company), so each refuses exactly when its `when` holds
        "constraints": [{"id": f"when-{index}", "product": "box", "when": when, "message": f"when {index}",
                         "require": {"partner.company": "Nobody"}} for index, when in enumerate(whens)]
        + [{"id": f"require-{index}", "product": "box", "message": f"require {index}", "code": "unmet",
            "require": require} for index, require in enumerate(requires)],
        "notices": [{"id": f"notice-{index}", "product": "box", "when": when, "message": f"notice {index}"}
                    for index, when in enumerate(notices)],
    }
    (directory / "constraints.yaml").write_text(yaml.dump(further, Dumper=Written, sort_keys=False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(whens=st.lists(written_trees(3), min_size=1, max_size=3), requires=st.lists(written_trees(3), min_size=1,
                                                                                     max_size=3),
       notices=st.lists(written_trees(2), min_size=1, max_size=2), alpha_when=written_trees(2),
       requests=st.lists(box_requests(), min_size=1, max_size=15))
def test_conditions_written_in_rule_files_refuse_exactly_when_the_reference_evaluator_says(
        tmp_path_factory, whens, requires, notices, alpha_when, requests):
    """A constraint's `when` refuses iff it is true; its `require` iff it is not true (unknown refuses); a notice
    shows iff its `when` is true; add-on alpha's version requirement applies iff alpha is chosen and its `when` is
    true. The requests go through engine.evaluate on the compiled YAML."""
    directory = tmp_path_factory.mktemp("box")
    box_rules(directory, [data for data, _ in whens], [data for data, _ in requires], [data for data, _ in notices],
              alpha_when[0])
    try:
        catalog = load_catalog(directory)
        compiled = compile_catalog(catalog)
    except CompanionError as error:
        # A requirement that can never hold, or a condition too intricate for the engine, is refused as such
        # when the rules load: not what this property is about.
        assert {problem.code for problem in error.problems if problem.severity != "warning"} <= {
            "condition-never-holds", "engine-limit"}, error
        reject()
    scope = scope_of(catalog, catalog.products["box"])

    def meant(tree):
        problems: list = []
        resolved = resolve_tree(tree, scope, problems)
        assert not problems, problems
        return resolved

    try:
        for document in requests:
            verdict = evaluate_request(compiled, request_from_data(document, catalog))
            facts = verdict.facts
            refused = {(item["rule"], item["code"]) for item in verdict.violations}
            shown = {item["rule"] for item in verdict.notices}
            expected_refusals = {(f"constraint.when-{index}", "constraint") for index, (_, tree) in enumerate(whens)
                                 if evaluate(meant(tree), facts) is True}
            expected_refusals |= {(f"constraint.require-{index}", "unmet") for index, (_, tree) in enumerate(requires)
                                  if evaluate(meant(tree), facts) is not True}
            alpha = ("addon.box.alpha", "requires-version")
            if ("alpha" in facts["addons"] and evaluate(meant(alpha_when[1]), facts) is True
                    and facts["configuration.version"] < version_number("2.0")):
                expected_refusals.add(alpha)
            ours = {item for item in refused if item[0].startswith("constraint.") or item == alpha}
            assert ours == expected_refusals, (document, facts)
            assert {rule for rule in shown if rule.startswith("notice.")} == {
                f"notice.notice-{index}" for index, (_, tree) in enumerate(notices) if evaluate(meant(tree), facts) is True
            }, (document, facts)
    finally:
        compiled.close()
