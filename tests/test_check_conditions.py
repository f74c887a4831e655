"""The always / never decision of catalogue.check_conditions is exact: it agrees with trying every value."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.catalogue.check_conditions import outcomes
from engine.catalogue.conditions import RANK, All, Any_, Not, evaluate
from engine.catalogue.conditions import Test as Comparison
from engine.catalogue.load import load_catalog
from engine.problem import Location

BASE = Path(__file__).resolve().parent / "bad_rules" / "_base"
CATALOG = load_catalog(BASE)
EPO = CATALOG.products["epo"]
HERE = Location("test.yaml", 1, 1)
DAY = dt.date(2025, 6, 1).toordinal()


def comparison(fact: str, low: int, high: int):
    """A resolved comparison of a number fact with a constant in [low, high]."""
    ops = ["is", "is_not", "at_least", "at_most"] + (["before", "after"] if fact == "date" else [])
    return st.builds(lambda op, value: Comparison(fact, op, value, HERE, value), st.sampled_from(ops),
                     st.integers(low, high))


LEAVES = st.one_of(comparison("configuration.devices", 0, 12), comparison("date", DAY - 3, DAY + 3),
                   st.builds(lambda values: Comparison("partner.country", "one_of", values, HERE, list(values)),
                             st.lists(st.sampled_from(["FR", "DE", "US"]), min_size=1, max_size=2).map(tuple)),
                   st.just(Comparison("partner.country", "present", True, HERE, True)))
TREES = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda parts: All(tuple(parts), HERE)),
    st.lists(inner, min_size=1, max_size=3).map(lambda parts: Any_(tuple(parts), HERE)),
    inner.map(lambda part: Not(part, HERE))), max_leaves=6)


def every_value(tree) -> set:
    """Evaluate TREE on every devices count, day and country near the constants (brute force)."""
    seen = set()
    for devices in range(0, 20):
        for day in range(DAY - 10, DAY + 10):
            for country in ("FR", "DE", "US", "IT", None):
                seen.add(evaluate(tree, {"configuration.devices": devices, "date": day, "partner.country": country}))
    return seen


@settings(max_examples=300, deadline=None)
@given(TREES)
def test_the_decision_agrees_with_trying_every_value(tree):
    assert outcomes(tree, EPO).values == every_value(tree)


TIERS = [tier.id for tier in EPO.tiers]
FINITE = st.one_of(
    st.builds(lambda op, tier: Comparison("configuration.tier", op, tier, HERE,
                                          EPO.tier(tier).rank if op in ("at_least", "at_most") else tier),
              st.sampled_from(["is", "is_not", "at_least", "at_most"]), st.sampled_from(TIERS)),
    st.builds(lambda license: Comparison("configuration.license", "is", license, HERE, license),
              st.sampled_from(["subscription", "perpetual"])),
    st.builds(lambda op, badge: Comparison("partner.badges", op, badge, HERE, badge),
              st.sampled_from(["is", "is_not"]), st.sampled_from(sorted(CATALOG.badges))),
    st.builds(lambda kind: Comparison("change.kind", "is", kind, HERE, kind), st.sampled_from(["amendment", "renewal"])))
FINITE_TREES = st.recursive(FINITE, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda parts: All(tuple(parts), HERE)),
    st.lists(inner, min_size=1, max_size=3).map(lambda parts: Any_(tuple(parts), HERE)),
    inner.map(lambda part: Not(part, HERE))), max_leaves=6)


def every_configuration(tree) -> set:
    """Evaluate TREE on every tier and licence of epo, every set of badges and every change kind."""
    seen = set()
    badges = sorted(CATALOG.badges)
    held = [frozenset(chosen) for size in range(len(badges) + 1) for chosen in itertools.combinations(badges, size)]
    for tier, license, badge_set, kind in itertools.product(EPO.tiers, EPO.licenses, held,
                                                            ("amendment", "renewal", None)):
        seen.add(evaluate(tree, {"configuration.tier": tier.id, "configuration.tier" + RANK: tier.rank,
                                 "configuration.license": license, "partner.badges": badge_set,
                                 "change.kind": kind}))
    return seen


@settings(max_examples=300, deadline=None)
@given(FINITE_TREES)
def test_the_decision_over_finite_facts_agrees_with_every_configuration(tree):
    assert outcomes(tree, EPO).values == every_configuration(tree)
