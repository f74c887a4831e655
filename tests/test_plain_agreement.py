"""The engine and the plain-Python floor (bench/plain.py) give the same verdict on every generated request.

Observable verdict: valid, the set of (rule, code) violations, the (rule, code) notices, and the bill of
materials lines (reference, quantity, months) in order. Catalogues: the sample (rules/), a 20-product
synthetic one (bench/synthetic.py), and a small one written here for the corners neither has (several
badges unlocking one product from different versions, 3.9 < 3.10, mutual exclusions, an add-on needing two
others, products sold only perpetually or only by subscription).
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.plain import evaluate_plain, observe  # noqa: E402
from bench.requests import generate_requests  # noqa: E402
from engine.inference.compile import load  # noqa: E402
from engine.inference.evaluate import evaluate  # noqa: E402
from engine.inference.request import request_from_data  # noqa: E402

EDGE_RULES = {
    "badges.yaml": """
        badges:
          - id: alpha
            name: Alpha
            unlocks:
              - {product: px, min_version: "2.0"}
              - {product: py}
          - id: beta
            name: Beta
            unlocks:
              - {product: px, min_version: "3.9"}
          - id: gamma
            name: Gamma
            unlocks:
              - {product: px, min_version: "1.5"}
              - {product: pz}
          - id: delta
            name: Delta
            unlocks:
              - {product: px}
    """,
    "tiers.yaml": """
        products:
          - id: px
            name: PX
            versions: ["1.0", "1.5", "2.0", "3.0", "3.9", "3.10"]
            licenses:
              subscription: {terms: [12, 24]}
              perpetual: {}
            tiers:
              - id: t0
                name: T0
                former_names: [old0, older0]
                devices: {included: 0, max: 10}
                references: {subscription-12: PX-T0-12, subscription-24: PX-T0-24, perpetual: PX-T0-P}
              - id: t1
                name: T1
                devices: {included: 5, max: 20}
                references: {subscription-12: PX-T1-12, subscription-24: PX-T1-24, perpetual: PX-T1-P}
            upgrades:
              - {from: t0, to: t1}
          - id: py
            name: PY
            versions: ["1"]
            licenses:
              perpetual: {}
            tiers:
              - id: a
                name: A
                devices: {included: 2, max: 2}
                references: {perpetual: PY-A}
          - id: pz
            name: PZ
            versions: ["1"]
            licenses:
              subscription: {terms: [6]}
            tiers:
              - id: a
                name: A
                devices: {included: 2, max: 2}
                references: {subscription-6: PZ-A}
    """,
    "addons.yaml": """
        addons:
          - id: m1
            product: px
            name: M1
            references: {subscription-12: PX-M1-12, subscription-24: PX-M1-24, perpetual: PX-M1-P}
          - id: m2
            product: px
            name: M2
            requires: {tier: t1, addons: [m1, m3]}
            excludes: [m4]
            quantity: {max: 2}
            references: {subscription-12: PX-M2-12, subscription-24: PX-M2-24, perpetual: PX-M2-P}
          - id: m3
            product: px
            name: M3
            excludes: [m4]
            references: {subscription-12: PX-M3-12, subscription-24: PX-M3-24, perpetual: PX-M3-P}
          - id: m4
            product: px
            name: M4
            excludes: [m2]
            references: {subscription-12: PX-M4-12, subscription-24: PX-M4-24, perpetual: PX-M4-P}
        devices:
          - product: px
            name: PX device licence
            references: {subscription-12: PX-DEV-12, subscription-24: PX-DEV-24, perpetual: PX-DEV-P}
    """,
}


@pytest.fixture(scope="module")
def synthetic_rules(tmp_path_factory) -> Path:
    from bench.synthetic import generate_catalog

    directory = tmp_path_factory.mktemp("synthetic-20")
    generate_catalog(directory, products=20)
    return directory


@pytest.fixture(scope="module")
def edge_rules(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("edge")
    for name, text in EDGE_RULES.items():
        (directory / name).write_text(textwrap.dedent(text).lstrip())
    return directory


def disagreements(directory: Path, count: int, seed: int) -> tuple[list[dict], dict]:
    """Evaluate count generated requests with both; return the disagreements and what was exercised."""
    compiled = load(directory)
    found = []
    seen: dict[str, int] = {"valid": 0}
    for data in generate_requests(compiled.catalog, count, seed):
        request = request_from_data(data, compiled.catalog)
        engine = observe(evaluate(compiled, request).to_json())
        plain = evaluate_plain(compiled.catalog, request)
        seen["valid"] += engine["valid"]
        for _, code in engine["violations"] + engine["notices"]:
            seen[code] = seen.get(code, 0) + 1
        if engine != plain:
            found.append({"request": data, "engine": engine, "plain": plain})
    return found, seen


def report(found: list[dict]) -> str:
    head = "\n".join(json.dumps(item, default=str) for item in found[:5])
    return f"{len(found)} disagreements; the first ones:\n{head}"


ALL_CODES = {"not-entitled", "version-too-low", "license-not-offered", "term-not-offered", "over-limit",
             "requires-tier", "requires-addon", "excluded", "former-name", "term-ignored", "version-assumed"}


def test_sample_catalogue_agrees(tmp_path):
    # the plain model is of the core files: constraints.yaml (availability, constraints, notices) is compared
    # with the condition language's own reference evaluator in the conditions tests
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "constraints.yaml").unlink()
    found, seen = disagreements(rules, 2000, seed=1)
    assert not found, report(found)
    # every rule kind was exercised; every sample product is sold both ways since EPO is sold perpetual (issue #14)
    assert set(seen) - {"valid"} == ALL_CODES - {"license-not-offered"} | {"requires-version"}
    assert 600 < seen["valid"] < 1400


def test_synthetic_catalogue_agrees(synthetic_rules):
    found, seen = disagreements(synthetic_rules, 2000, seed=2)
    assert not found, report(found)
    # the synthetic set's minimum versions are each product's oldest: version-too-low cannot happen there
    assert set(seen) - {"valid"} == ALL_CODES - {"version-too-low"}
    assert 600 < seen["valid"] < 1400


def test_edge_catalogue_agrees(edge_rules):
    found, seen = disagreements(edge_rules, 1000, seed=3)
    assert not found, report(found)
    assert set(seen) - {"valid"} == ALL_CODES


def test_requests_are_deterministic_and_well_formed():
    compiled = load(ROOT / "rules")
    first = generate_requests(compiled.catalog, 300, seed=7)
    assert first == generate_requests(compiled.catalog, 300, seed=7)
    assert first != generate_requests(compiled.catalog, 300, seed=8)
    for data in first:
        request_from_data(data, compiled.catalog)  # raises CompanionError if malformed


def test_year_versions_against_a_minimum_version(tmp_path):
    """Regression: version_number clamped parts at 999, so 2021 and 2023 encoded alike."""
    for name, text in EDGE_RULES.items():
        text = textwrap.dedent(text).lstrip()
        if name == "tiers.yaml":
            text = text.replace('name: PY\n    versions: ["1"]', 'name: PY\n    versions: ["2021", "2022", "2023", "2024"]')
        if name == "badges.yaml":
            text = text.replace("- {product: py}", '- {product: py, min_version: "2023"}')
        (tmp_path / name).write_text(text)
    compiled = load(tmp_path)
    assert compiled.catalog.badges["alpha"].unlocks[1].min_version == "2023"
    request = request_from_data({"partner": {"badges": ["alpha"]},
                                 "configuration": {"product": "py", "version": "2021", "license": "perpetual",
                                                   "tier": "a"}}, compiled.catalog)
    plain = evaluate_plain(compiled.catalog, request)
    assert plain["violations"] == [("badge.alpha", "version-too-low")]
    assert observe(evaluate(compiled, request).to_json()) == plain
